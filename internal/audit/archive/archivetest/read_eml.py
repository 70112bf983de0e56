"""Read .eml files with Python's standard email package, as an archiver
would, and print what it found as JSON: one object per file, in order.
Embedded by internal/audit/archive/archivetest for the Go tests of
xmppedge's export: python3 read_eml.py FILE..."""
import email
import email.policy
import json
import sys


def mailbox(header):
    if header is None:
        return None
    a = header.addresses
    if len(a) != 1:
        return {"count": len(a)}
    return {"name": a[0].display_name, "addr": a[0].addr_spec}


def text(header):
    return None if header is None else str(header)


def read(path):
    with open(path, "rb") as f:
        msg = email.message_from_bytes(f.read(), policy=email.policy.default)
    defects = [type(d).__name__ for d in msg.defects]
    for name, value in msg.items():
        defects += [name + ": " + type(d).__name__ for d in getattr(value, "defects", ())]
    body = msg.get_content().replace("\r\n", "\n")
    return {
        "file": path,
        "headers": [name for name, _ in msg.items()],
        "from": mailbox(msg["from"]),
        "to": mailbox(msg["to"]),
        "date": msg["date"].datetime.isoformat() if msg["date"] is not None else None,
        "subject": text(msg["subject"]),
        "message_id": text(msg["message-id"]),
        "thread": text(msg["x-xmpp-thread"]),
        "id": text(msg["x-xmpp-id"]),
        "xmpp_from": text(msg["x-xmpp-from"]),
        "xmpp_to": text(msg["x-xmpp-to"]),
        "decision": text(msg["x-xmpp-decision"]),
        "direction": text(msg["x-xmpp-direction"]),
        "chain": text(msg["x-xmppedge-chain"]),
        "content_type": msg.get_content_type(),
        "charset": msg.get_content_charset(),
        "body": body,
        "defects": defects,
    }


json.dump([read(p) for p in sys.argv[1:]], sys.stdout)
