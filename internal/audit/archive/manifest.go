package archive

import (
	"time"
)

// ManifestName is the manifest's file name in an export folder.
const ManifestName = "manifest.json"

// RecordsName is the JSON Lines file of an export: every matching record
// (-format jsonl), or those that are not a message with a body (eml).
const RecordsName = "records.jsonl"

// Manifest describes an export folder: what was asked, what was read and
// verified, and every file with its SHA-256 and chain positions, so that
// an auditor can tie each file back to the verified chain.
type Manifest struct {
	Tool    string        `json:"tool"`
	Format  string        `json:"format"`
	Created time.Time     `json:"created"`
	Filter  FilterSummary `json:"filter"`
	// Verified: every chain read was verified, and only verified records
	// were exported. False only with -no-verify; Chains then say what
	// verifying found.
	Verified bool    `json:"chain_verified"`
	Chains   []Chain `json:"chains"`
	Counts   Counts  `json:"counts"`
	Files    []File  `json:"files"`
}

// FilterSummary is the filter of the export; empty members matched all.
type FilterSummary struct {
	Domain string `json:"domain,omitempty"`
	JID    string `json:"jid,omitempty"`
	Since  string `json:"since,omitempty"` // RFC 3339: records at or after
	Until  string `json:"until,omitempty"` // RFC 3339: records before
}

// Position is a record's place in the chain.
type Position struct {
	Node string    `json:"node"`
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
}

// Chain is one chain read (the file series of a log, or a node's chain in
// the cluster's stream): what verifying it found, and the first and last
// records exported from it.
type Chain struct {
	Source    []string `json:"source"`               // the files read, oldest first
	Records   uint64   `json:"records"`              // records read (verified: that verified)
	FirstSeq  uint64   `json:"first_seq,omitempty"`  // the first record read
	FirstPrev string   `json:"first_prev,omitempty"` // set when the chain continues files not read
	LastSeq   uint64   `json:"last_seq,omitempty"`
	LastHash  string   `json:"last_hash,omitempty"` // the head: compare with a published head
	Intact    bool     `json:"intact"`
	Break     string   `json:"break,omitempty"` // -no-verify: where and why the chain broke
	// ExportedFirst and ExportedLast are the first and last records of
	// this chain in the export (nil: none matched).
	ExportedFirst *Position `json:"exported_first,omitempty"`
	ExportedLast  *Position `json:"exported_last,omitempty"`
}

// Counts sums up the export.
type Counts struct {
	Read     uint64 `json:"records_read"`
	Matched  uint64 `json:"records_matched"`
	Messages uint64 `json:"messages"`      // .eml files
	Lines    uint64 `json:"records_jsonl"` // lines of records.jsonl
	NoBody   uint64 `json:"full_no_body"`  // eml: message stanzas kept in full without a body (in records.jsonl)
	Unparsed uint64 `json:"full_unparsed"` // eml: kept stanzas that did not parse as a message (in records.jsonl)
}

// File is one exported file.
type File struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Bytes  int64  `json:"bytes"`
	// Record is the record of an .eml; First, Last and Records describe
	// records.jsonl.
	Record  *Position `json:"record,omitempty"`
	Records uint64    `json:"records,omitempty"`
	First   *Position `json:"first,omitempty"`
	Last    *Position `json:"last,omitempty"`
}
