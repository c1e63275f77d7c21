// SPDX-License-Identifier: MIT

package psttest

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
)

// TestBuildLayout: the header points at B-tree pages whose trailers carry
// the bids the header names, as readers check; what does not fit in one
// block is refused rather than written wrong.
func TestBuildLayout(t *testing.T) {
	var msgs []Message
	for range 40 { // more nodes than one NBT page holds
		msgs = append(msgs, Message{Headers: "Subject: x\r\n\r\n", Subject: "x", Body: "y"})
	}
	b, err := Build("Test", []Folder{{Name: "Inbox", Messages: msgs}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("!BDN")) || b[0x0A] != 0x0E || int(binary.LittleEndian.Uint32(b[0xA8:])) != len(b) {
		t.Fatalf("header: %x", b[:16])
	}
	for _, off := range []int{0xB8, 0xC0} {
		bid, ib := binary.LittleEndian.Uint32(b[off:]), binary.LittleEndian.Uint32(b[off+4:])
		if got := binary.LittleEndian.Uint32(b[ib+0x1F8:]); got != bid {
			t.Errorf("page at %#x has bid %#x, header says %#x", ib, got, bid)
		}
	}
	if _, err := Build("Test", []Folder{{Name: "Inbox", Messages: []Message{{Body: strings.Repeat("x", 5000)}}}}); err == nil {
		t.Error("a body over one block was written")
	}
}
