"""xmppedge e2e test-bed client: one slixmpp session driven over JSON lines.

Usage: /usr/bin/python3 client.py JID PASSWORD HOST PORT

Commands (stdin, one JSON object per line):
  {"cmd":"message","to":J,"body":B,"id":I}     send a chat message
  {"cmd":"subscribe","to":J}                   send presence type=subscribe
  {"cmd":"presence","to":J,"type":T}           send any presence
  {"cmd":"iq","what":"ping"|"version","to":J,"id":I,"timeout":S}
  {"cmd":"raw","xml":X}                        send a stanza written by the test as it is
                                               (answers to a raw iq whose id starts with
                                               "raw-" are reported as iq_result/iq_error)
  {"cmd":"close"}                              disconnect and exit

Events (stdout, one JSON object per line, flushed each):
  {"kind":K,"from":..,"to":..,"type":..,"id":..,"body":..,"error":..,"error_text":..,"show":..,
   "status":..,"children":["{ns}name",...]}
Logs go to stderr.
"""
import asyncio
import json
import logging
import os
import ssl
import sys

from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

log = logging.getLogger("client")


STANZAS_NS = "{urn:ietf:params:xml:ns:xmpp-stanzas}"


def error_condition(stanza):
    """The defined condition of an error stanza, read from the XML itself:
    slixmpp 1.8 only knows RFC 3920's conditions (no policy-violation)."""
    for err in stanza.xml:
        if err.tag.endswith("}error"):
            for child in err:
                if child.tag.startswith(STANZAS_NS) and child.tag != STANZAS_NS + "text":
                    return child.tag[len(STANZAS_NS):]
    return ""


def children(stanza):
    """The payload elements of a stanza as "{namespace}name", in order."""
    return [child.tag for child in stanza.xml]


def emit(kind, stanza=None, **kw):
    ev = {"kind": kind}
    if stanza is not None:
        ev["children"] = children(stanza)
        ev["from"] = str(stanza["from"])
        ev["to"] = str(stanza["to"])
        ev["type"] = stanza["type"] or ""
        ev["id"] = stanza["id"] or ""
        if stanza["type"] == "error":
            ev["error"] = error_condition(stanza)
            ev["error_text"] = stanza["error"]["text"] or ""
    ev.update({k: v for k, v in kw.items() if v is not None})
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


class Client(ClientXMPP):
    def __init__(self, jid, password):
        super().__init__(jid, password)
        # Every subscription request is accepted and answered by a
        # subscription request of our own (both default True in slixmpp;
        # set here so the behaviour is explicit).
        self.roster.auto_authorize = True
        self.roster.auto_subscribe = True
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0092")
        self.register_plugin("xep_0199", {"keepalive": False})
        self.whitespace_keepalive = False
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("message_error", self.on_message_error)
        # slixmpp names the event of an available presence after its show
        # (presence_away, ...): every one of them is a "presence" event.
        for show in ("available", "chat", "away", "xa", "dnd"):
            self.add_event_handler("presence_" + show, lambda p: emit("presence", p, show=p["show"] or "", status=p["status"] or ""))
        self.add_event_handler("presence_unavailable", lambda p: emit("presence", p))
        self.add_event_handler("presence_error", lambda p: emit("presence_error", p))
        self.add_event_handler("presence_subscribe", lambda p: emit("subscribe", p))
        self.add_event_handler("presence_subscribed", lambda p: emit("subscribed", p))
        self.add_event_handler("presence_unsubscribe", lambda p: emit("unsubscribe", p))
        self.add_event_handler("presence_unsubscribed", lambda p: emit("unsubscribed", p))
        self.add_event_handler("failed_auth", lambda *_: emit("failed_auth"))
        self.add_event_handler("disconnected", lambda *_: emit("disconnected"))
        self.add_event_handler("connection_failed", lambda *_: emit("connection_failed"))
        self.add_event_handler("stream_error", lambda e: emit("stream_error", error=e["condition"], error_text=e["text"]))
        self.register_handler(Callback("raw iq answers", MatchXPath("{%s}iq" % self.default_ns), self.on_raw_iq))
        self._buf = b""
        self._done = None

    def on_raw_iq(self, iq):
        if not (iq["id"] or "").startswith("raw-"):
            return
        if iq["type"] == "error":
            emit("iq_error", iq)
        elif iq["type"] == "result":
            emit("iq_result", iq)

    async def on_start(self, _event):
        self.send_presence()
        # Do not wait for the roster: a full roster fetch round-trip is not
        # needed by the tests, but fetch it so subscriptions are tracked.
        try:
            await self.get_roster(timeout=10)
        except (IqError, IqTimeout) as e:
            log.warning("roster: %s", e)
        loop = asyncio.get_event_loop()
        loop.add_reader(sys.stdin.fileno(), self.on_stdin)
        emit("session_start", to=str(self.boundjid))

    def on_message(self, msg):
        emit("message", msg, body=msg["body"])

    def on_message_error(self, msg):
        emit("message_error", msg, body=msg["body"])

    def on_stdin(self):
        data = os.read(sys.stdin.fileno(), 65536)
        if not data:
            asyncio.get_event_loop().remove_reader(sys.stdin.fileno())
            self.shutdown()
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line.strip():
                try:
                    self.command(json.loads(line))
                except Exception as e:  # report, keep going
                    log.exception("command %r", line)
                    emit("command_error", error=str(e))

    def command(self, c):
        cmd = c.get("cmd")
        if cmd == "message":
            m = self.make_message(mto=c["to"], mbody=c.get("body", ""), mtype=c.get("type") or "chat")
            if c.get("id"):
                m["id"] = c["id"]
            m.send()
        elif cmd == "subscribe":
            self.send_presence(pto=c["to"], ptype="subscribe")
        elif cmd == "presence":
            self.send_presence(pto=c["to"], ptype=c.get("type") or None)
        elif cmd == "iq":
            asyncio.ensure_future(self.do_iq(c))
        elif cmd == "raw":
            self.send_raw(c["xml"])
        elif cmd == "close":
            self.shutdown()
        else:
            emit("command_error", error="unknown command %r" % cmd)

    async def do_iq(self, c):
        iq = self.make_iq_get(ito=c["to"])
        iq["id"] = c["id"]
        # <ping xmlns='urn:xmpp:ping'/>, <query xmlns='jabber:iq:version'/>
        iq.enable({"ping": "ping", "version": "software_version"}[c["what"]])
        try:
            res = await iq.send(timeout=float(c.get("timeout") or 10))
        except IqError as e:
            emit("iq_error", e.iq, id=c["id"])
            return
        except IqTimeout:
            emit("iq_timeout", id=c["id"], to=c["to"])
            return
        body = None
        if c["what"] == "version":
            q = res["software_version"]
            body = " ".join(x for x in (q["name"], q["version"]) if x)
        emit("iq_result", res, body=body)

    def shutdown(self):
        if self._done is None:
            self._done = self.disconnect(wait=2)


def main():
    jid, password, host, port = sys.argv[1:5]
    logging.basicConfig(level=os.environ.get("XMPPEDGE_CLIENT_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    xmpp = Client(jid, password)
    xmpp.connect((host, int(port)))
    loop = asyncio.get_event_loop()
    xmpp.add_event_handler("disconnected", lambda *_: loop.call_soon(loop.stop))
    loop.run_forever()


if __name__ == "__main__":
    main()
