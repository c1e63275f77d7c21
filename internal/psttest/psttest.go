// SPDX-License-Identifier: MIT

// Package psttest writes small Outlook PST files for tests, so that the PST
// import is tested against readpst with a fixture anyone can regenerate
// (there is no free PST writer to make one with). It writes the ANSI
// (32-bit) format of [MS-PST]: the header, the block and node B-trees as
// single pages (or two levels), and for every folder and message a property
// context on a heap-on-node; a message's attachments are a table context and
// a property context in its subnodes. It leaves out what readers do not
// need to find mail: the allocation maps, the folders' hierarchy and
// contents tables, the name-to-ID map and the CRCs. Everything must be
// small: a block is at most 8176 bytes, as [MS-PST] allows.
package psttest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"time"
	"unicode/utf16"
)

// Folder is a mail folder with its messages and subfolders.
type Folder struct {
	Name     string
	Messages []Message
	Folders  []Folder
}

// Message is one message. Headers is its Internet header block (CRLF
// lines), which readpst writes out as the message's header.
type Message struct {
	Headers     string
	Subject     string
	Body        string
	Read        bool
	Delivered   time.Time
	Attachments []Attachment
}

// Attachment is a file attached by value.
type Attachment struct {
	Name, ContentType string
	Data              []byte
}

// Property types and the tags used ([MS-OXCDATA] 2.11.1, [MS-OXPROPS]).
const (
	ptLong    = 0x0003
	ptBoolean = 0x000B
	ptUnicode = 0x001F
	ptSystime = 0x0040
	ptBinary  = 0x0102

	tagMessageClass   = 0x001A
	tagSubject        = 0x0037
	tagSubmitTime     = 0x0039
	tagHeaders        = 0x007D // PidTagTransportMessageHeaders
	tagDeliveryTime   = 0x0E06
	tagMessageFlags   = 0x0E07
	tagAttachSize     = 0x0E20
	tagBody           = 0x1000
	tagDisplayName    = 0x3001
	tagIPMSubtree     = 0x35E0
	tagContentCount   = 0x3602
	tagContentUnread  = 0x3603
	tagSubfolders     = 0x360A
	tagContainerClass = 0x3613
	tagAttachData     = 0x3701
	tagAttachFilename = 0x3704
	tagAttachMethod   = 0x3705
	tagAttachLongName = 0x3707
	tagAttachMime     = 0x370E
	tagLtpRowID       = 0x67F2
	tagLtpRowVer      = 0x67F3

	msgflagRead    = 0x01
	msgflagHasAtt  = 0x10
	attachByValue  = 1
	maxBlock       = 8176
	maxAllocation  = 3580
	nidMessageStor = 0x21
	nidIPMSubtree  = 0x8022
	nidAttachTable = 0x671

	nidTypeFolder     = 0x02
	nidTypeMessage    = 0x04
	nidTypeAttachment = 0x05
)

type prop struct {
	id, typ uint16
	inline  uint32 // value of a 4-byte type
	data    []byte // value of any other type
}

func unicodeProp(id uint16, s string) prop {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u))
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return prop{id: id, typ: ptUnicode, data: b}
}

func longProp(id uint16, v uint32) prop { return prop{id: id, typ: ptLong, inline: v} }

func timeProp(id uint16, t time.Time) prop {
	// FILETIME: 100-nanosecond intervals since 1601-01-01 UTC.
	ft := uint64(t.UTC().Sub(time.Date(1601, 1, 1, 0, 0, 0, 0, time.UTC)) / 100)
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, ft)
	return prop{id: id, typ: ptSystime, data: b}
}

// hid is the heap ID of the i-th allocation (1-based) in block 0.
func hid(i int) uint32 { return uint32(i) << 5 }

// heap lays out a heap-on-node ([MS-PST] 2.3.1): header, allocations,
// page map.
func heap(clientSig byte, allocs [][]byte) ([]byte, error) {
	var b bytes.Buffer
	b.Write(make([]byte, 12))
	offsets := []uint16{}
	for _, a := range allocs {
		if len(a) > maxAllocation {
			return nil, fmt.Errorf("psttest: an allocation of %d bytes (at most %d)", len(a), maxAllocation)
		}
		offsets = append(offsets, uint16(b.Len()))
		b.Write(a)
	}
	offsets = append(offsets, uint16(b.Len()))
	if b.Len()%2 == 1 {
		b.WriteByte(0)
	}
	ibHnpm := b.Len()
	binary.Write(&b, binary.LittleEndian, uint16(len(allocs)))
	binary.Write(&b, binary.LittleEndian, uint16(0))
	for _, o := range offsets {
		binary.Write(&b, binary.LittleEndian, o)
	}
	out := b.Bytes()
	binary.LittleEndian.PutUint16(out[0:], uint16(ibHnpm))
	out[2], out[3] = 0xEC, clientSig
	binary.LittleEndian.PutUint32(out[4:], hid(1))
	if len(out) > maxBlock {
		return nil, fmt.Errorf("psttest: a block of %d bytes (at most %d)", len(out), maxBlock)
	}
	return out, nil
}

// propertyContext is a PC ([MS-PST] 2.3.3): a BTH of property records on a
// heap, bClientSig 0xBC.
func propertyContext(props []prop) ([]byte, error) {
	sort.Slice(props, func(i, j int) bool { return props[i].id < props[j].id })
	allocs := [][]byte{nil, nil}
	var recs bytes.Buffer
	for _, p := range props {
		binary.Write(&recs, binary.LittleEndian, p.id)
		binary.Write(&recs, binary.LittleEndian, p.typ)
		v := p.inline
		if p.data != nil {
			allocs = append(allocs, p.data)
			v = hid(len(allocs))
		}
		binary.Write(&recs, binary.LittleEndian, v)
	}
	// BTHHEADER: bType 0xB5, cbKey 2, cbEnt 6, bIdxLevels 0, hidRoot.
	allocs[0] = []byte{0xB5, 2, 6, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(allocs[0][4:], hid(2))
	allocs[1] = recs.Bytes()
	return heap(0xBC, allocs)
}

// attachmentTable is the TC ([MS-PST] 2.3.4) listing a message's
// attachments by the NIDs of their subnodes.
func attachmentTable(nids []uint32) ([]byte, error) {
	// Two 4-byte columns, then the cell existence bitmap.
	const rowSize = 4 + 4 + 1
	info := []byte{0x7C, 2}
	for _, v := range []uint16{8, 8, 8, rowSize} { // rgib: end of 4-, 2-, 1-byte cells, row size
		info = binary.LittleEndian.AppendUint16(info, v)
	}
	info = binary.LittleEndian.AppendUint32(info, hid(2)) // hidRowIndex
	info = binary.LittleEndian.AppendUint32(info, hid(4)) // hnidRows
	info = binary.LittleEndian.AppendUint32(info, 0)      // hidIndex (deprecated)
	for i, tag := range []uint16{tagLtpRowID, tagLtpRowVer} {
		info = binary.LittleEndian.AppendUint16(info, ptLong)
		info = binary.LittleEndian.AppendUint16(info, tag)
		info = binary.LittleEndian.AppendUint16(info, uint16(4*i)) // ibData
		info = append(info, 4, byte(i))                            // cbData, iBit
	}
	index := []byte{0xB5, 4, 4, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(index[4:], hid(3))
	var recs, rows []byte
	sorted := append([]uint32(nil), nids...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	for i, n := range sorted {
		recs = binary.LittleEndian.AppendUint32(recs, n)
		recs = binary.LittleEndian.AppendUint32(recs, uint32(i))
		rows = binary.LittleEndian.AppendUint32(rows, n)
		rows = binary.LittleEndian.AppendUint32(rows, 1)
		rows = append(rows, 0xC0) // both cells exist
	}
	return heap(0x7C, [][]byte{info, index, recs, rows})
}

type node struct {
	nid, data, sub, parent uint32
}

type builder struct {
	blocks  []byte      // data area, starting at offset 512
	bbt     [][3]uint32 // bid, offset, size
	nodes   []node
	nextBID uint32
	nextNID uint32
}

func (b *builder) block(data []byte, internal bool) uint32 {
	for len(b.blocks)%64 != 0 {
		b.blocks = append(b.blocks, 0)
	}
	b.nextBID += 4
	bid := b.nextBID
	if internal {
		bid |= 2
	}
	b.bbt = append(b.bbt, [3]uint32{bid, uint32(512 + len(b.blocks)), uint32(len(data))})
	b.blocks = append(b.blocks, data...)
	return bid
}

func (b *builder) nid(typ uint32) uint32 {
	b.nextNID++
	return b.nextNID<<5 | typ
}

func (b *builder) folder(f Folder, parent uint32) error {
	unread := 0
	for _, m := range f.Messages {
		if !m.Read {
			unread++
		}
	}
	nid := b.nid(nidTypeFolder)
	sub := uint32(0)
	if len(f.Folders) > 0 {
		sub = 1
	}
	pc, err := propertyContext([]prop{unicodeProp(tagDisplayName, f.Name), longProp(tagContentCount, uint32(len(f.Messages))),
		longProp(tagContentUnread, uint32(unread)), {id: tagSubfolders, typ: ptBoolean, inline: sub}, unicodeProp(tagContainerClass, "IPF.Note")})
	if err != nil {
		return fmt.Errorf("folder %s: %w", f.Name, err)
	}
	b.nodes = append(b.nodes, node{nid: nid, data: b.block(pc, false), parent: parent})
	for i, m := range f.Messages {
		if err := b.message(m, nid); err != nil {
			return fmt.Errorf("folder %s, message %d: %w", f.Name, i+1, err)
		}
	}
	for _, c := range f.Folders {
		if err := b.folder(c, nid); err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) message(m Message, parent uint32) error {
	flags := uint32(0)
	if m.Read {
		flags |= msgflagRead
	}
	if len(m.Attachments) > 0 {
		flags |= msgflagHasAtt
	}
	props := []prop{unicodeProp(tagMessageClass, "IPM.Note"), unicodeProp(tagSubject, m.Subject), longProp(tagMessageFlags, flags),
		unicodeProp(tagHeaders, m.Headers), unicodeProp(tagBody, m.Body)}
	if !m.Delivered.IsZero() {
		props = append(props, timeProp(tagDeliveryTime, m.Delivered), timeProp(tagSubmitTime, m.Delivered))
	}
	pc, err := propertyContext(props)
	if err != nil {
		return err
	}
	n := node{nid: b.nid(nidTypeMessage), data: b.block(pc, false), parent: parent}
	if len(m.Attachments) > 0 {
		// The message's subnodes ([MS-PST] 2.4.6): the attachment table
		// and one property context per attachment, in an SLBLOCK.
		var entries [][3]uint32
		var nids []uint32
		for _, a := range m.Attachments {
			apc, err := propertyContext([]prop{longProp(tagAttachMethod, attachByValue), longProp(tagAttachSize, uint32(len(a.Data))),
				unicodeProp(tagAttachFilename, a.Name), unicodeProp(tagAttachLongName, a.Name), unicodeProp(tagAttachMime, a.ContentType),
				{id: tagAttachData, typ: ptBinary, data: a.Data}})
			if err != nil {
				return fmt.Errorf("attachment %s: %w", a.Name, err)
			}
			an := b.nid(nidTypeAttachment)
			nids = append(nids, an)
			entries = append(entries, [3]uint32{an, b.block(apc, false), 0})
		}
		tc, err := attachmentTable(nids)
		if err != nil {
			return err
		}
		entries = append(entries, [3]uint32{nidAttachTable, b.block(tc, false), 0})
		sort.Slice(entries, func(i, j int) bool { return entries[i][0] < entries[j][0] })
		sl := []byte{2, 0}
		sl = binary.LittleEndian.AppendUint16(sl, uint16(len(entries)))
		for _, e := range entries {
			for _, v := range e {
				sl = binary.LittleEndian.AppendUint32(sl, v)
			}
		}
		n.sub = b.block(sl, true)
	}
	b.nodes = append(b.nodes, n)
	return nil
}

// page is one 512-byte B-tree page ([MS-PST] 2.2.2.7.7.1, ANSI).
func page(entries [][]byte, entrySize int, level byte, ptype byte, bid uint32) []byte {
	p := make([]byte, 512)
	for i, e := range entries {
		copy(p[i*entrySize:], e)
	}
	p[0x1F0] = byte(len(entries))
	p[0x1F1] = byte(0x1F0 / entrySize)
	p[0x1F2] = byte(entrySize)
	p[0x1F3] = level
	p[0x1F4], p[0x1F5] = ptype, ptype
	binary.LittleEndian.PutUint32(p[0x1F8:], bid)
	return p
}

// tree writes a B-tree of leaf entries (sorted by their first 4 bytes) as
// pages at offset base, and returns the pages and the root's bid.
func tree(leaves [][]byte, entrySize int, ptype byte, base uint32, bid *uint32) ([]byte, uint32, error) {
	per := 0x1F0 / entrySize
	if len(leaves) == 0 {
		leaves = [][]byte{}
	}
	var out []byte
	var parents [][]byte
	for i := 0; i < len(leaves) || i == 0; i += per {
		chunk := leaves[i:min(i+per, len(leaves))]
		*bid += 4
		pb := *bid
		off := base + uint32(len(out))
		out = append(out, page(chunk, entrySize, 0, ptype, pb)...)
		key := uint32(0)
		if len(chunk) > 0 {
			key = binary.LittleEndian.Uint32(chunk[0])
		}
		e := binary.LittleEndian.AppendUint32(nil, key)
		e = binary.LittleEndian.AppendUint32(e, pb)
		e = binary.LittleEndian.AppendUint32(e, off)
		parents = append(parents, e)
		if len(leaves) == 0 {
			break
		}
	}
	if len(parents) == 1 {
		return out, *bid, nil
	}
	if len(parents) > 0x1F0/12 {
		return nil, 0, errors.New("psttest: too many nodes for a two-level tree")
	}
	*bid += 4
	out = append(out, page(parents, 12, 1, ptype, *bid)...)
	return out, *bid, nil
}

// Build returns a PST whose store is named store, with folders at its top.
func Build(store string, folders []Folder) ([]byte, error) {
	// NIDs from index 0x402 on: 0x401 is the IPM subtree's (0x8022).
	b := &builder{nextNID: 0x401}
	// The message store ([MS-PST] 2.4.3): its display name and the entry ID
	// of the top of the folders (flags, provider UID, NID).
	entry := make([]byte, 24)
	copy(entry[4:20], "dualmx-psttest!!")
	binary.LittleEndian.PutUint32(entry[20:], nidIPMSubtree)
	store1, err := propertyContext([]prop{unicodeProp(tagDisplayName, store), {id: tagIPMSubtree, typ: ptBinary, data: entry}})
	if err != nil {
		return nil, err
	}
	b.nodes = append(b.nodes, node{nid: nidMessageStor, data: b.block(store1, false)})
	top, err := propertyContext([]prop{unicodeProp(tagDisplayName, "Top of Personal Folders"), {id: tagSubfolders, typ: ptBoolean, inline: 1}})
	if err != nil {
		return nil, err
	}
	b.nodes = append(b.nodes, node{nid: nidIPMSubtree, data: b.block(top, false)})
	for _, f := range folders {
		if err := b.folder(f, nidIPMSubtree); err != nil {
			return nil, err
		}
	}
	sort.Slice(b.nodes, func(i, j int) bool { return b.nodes[i].nid < b.nodes[j].nid })
	sort.Slice(b.bbt, func(i, j int) bool { return b.bbt[i][0] < b.bbt[j][0] })
	var bbtLeaves, nbtLeaves [][]byte
	for _, e := range b.bbt {
		l := binary.LittleEndian.AppendUint32(nil, e[0])
		l = binary.LittleEndian.AppendUint32(l, e[1])
		l = binary.LittleEndian.AppendUint16(l, uint16(e[2]))
		l = binary.LittleEndian.AppendUint16(l, 1) // cRef
		bbtLeaves = append(bbtLeaves, l)
	}
	for _, n := range b.nodes {
		l := binary.LittleEndian.AppendUint32(nil, n.nid)
		l = binary.LittleEndian.AppendUint32(l, n.data)
		l = binary.LittleEndian.AppendUint32(l, n.sub)
		l = binary.LittleEndian.AppendUint32(l, n.parent)
		nbtLeaves = append(nbtLeaves, l)
	}
	for len(b.blocks)%512 != 0 {
		b.blocks = append(b.blocks, 0)
	}
	pageBID := uint32(0x100000)
	bbtBase := uint32(512 + len(b.blocks))
	bbt, bbtRoot, err := tree(bbtLeaves, 12, 0x80, bbtBase, &pageBID)
	if err != nil {
		return nil, err
	}
	nbtBase := bbtBase + uint32(len(bbt))
	nbt, nbtRoot, err := tree(nbtLeaves, 16, 0x81, nbtBase, &pageBID)
	if err != nil {
		return nil, err
	}
	rootOff := func(pages []byte, base uint32) uint32 { return base + uint32(len(pages)) - 512 }
	h := make([]byte, 512)
	copy(h, "!BDN")
	copy(h[8:], "SM")
	h[0x0A] = 0x0E                                       // wVer: ANSI
	binary.LittleEndian.PutUint16(h[0x0C:], 19)          // wVerClient
	h[0x0E], h[0x0F] = 1, 1                              // platform
	binary.LittleEndian.PutUint32(h[0x18:], b.nextBID+4) // bidNextB
	binary.LittleEndian.PutUint32(h[0x1C:], pageBID+4)   // bidNextP
	total := nbtBase + uint32(len(nbt))
	binary.LittleEndian.PutUint32(h[0xA8:], total) // ibFileEof
	binary.LittleEndian.PutUint32(h[0xB8:], nbtRoot)
	binary.LittleEndian.PutUint32(h[0xBC:], rootOff(nbt, nbtBase))
	binary.LittleEndian.PutUint32(h[0xC0:], bbtRoot)
	binary.LittleEndian.PutUint32(h[0xC4:], rootOff(bbt, bbtBase))
	h[0x1CD] = 0 // bCryptMethod: none
	out := append(h, b.blocks...)
	out = append(out, bbt...)
	return append(out, nbt...), nil
}
