// SPDX-License-Identifier: MIT

package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// cmdDNS is a stand-in for a local caching resolver: it answers every query
// at once with NOERROR and no records (NODATA), over UDP and TCP. The relay
// then finds no SPF, DKIM, DMARC or ARC records, as for a sender domain
// that publishes none, without waiting on a network this benchmark may not
// use. Each answer carries an SOA, as a real resolver's does, so the relay
// may cache it (RFC 2308) as it would in production. It prints the number
// of queries so far on SIGUSR1 and when it stops (SIGTERM/SIGINT or
// -lifetime), so run.sh can report lookups per message.
func cmdDNS(args []string) error {
	fs := flag.NewFlagSet("dns", flag.ExitOnError)
	addr := fs.String("addr", "", "listen address host:port (UDP and TCP)")
	lifetime := fs.Duration("lifetime", time.Hour, "stop after this long")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("dns: -addr is required")
	}
	pc, err := net.ListenPacket("udp", *addr)
	if err != nil {
		return err
	}
	defer pc.Close()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	defer ln.Close()

	var queries atomic.Int64
	go func() {
		buf := make([]byte, 4096)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := nodata(buf[:n]); resp != nil {
				queries.Add(1)
				pc.WriteTo(resp, from)
			}
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					var l [2]byte
					if _, err := readFull(c, l[:]); err != nil {
						return
					}
					msg := make([]byte, binary.BigEndian.Uint16(l[:]))
					if _, err := readFull(c, msg); err != nil {
						return
					}
					resp := nodata(msg)
					if resp == nil {
						return
					}
					queries.Add(1)
					out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
					if _, err := c.Write(append(out, resp...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	fmt.Fprintf(os.Stderr, "dns: answering NODATA on %s (udp, tcp)\n", *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	end := time.After(*lifetime)
	for {
		select {
		case s := <-sig:
			fmt.Printf("queries=%d\n", queries.Load())
			if s == syscall.SIGUSR1 {
				continue
			}
		case <-end:
			fmt.Printf("queries=%d\n", queries.Load())
		}
		return nil
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := c.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// negativeTTL is the SOA's TTL and MINIMUM in every answer: a resolver may
// keep the NODATA for 5 minutes (RFC 2308 §5), a common zone setting.
const negativeTTL = 300

// nodata turns a query into its answer: same ID and question, QR and RA set,
// RD copied, RCODE 0, no answer records, and in authority an SOA owned by the
// queried name (an EDNS OPT record in the query is dropped, which a client
// must accept). It returns nil for anything that is not a standard query
// with one question.
func nodata(q []byte) []byte {
	if len(q) < 12 {
		return nil
	}
	flags := binary.BigEndian.Uint16(q[2:4])
	if flags&0x8000 != 0 || (flags>>11)&0xf != 0 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	// Walk the question name to find where the question ends.
	i := 12
	for {
		if i >= len(q) {
			return nil
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l&0xc0 != 0 {
			return nil // no compression in a question we accept
		}
		i += 1 + l
	}
	i += 4 // QTYPE, QCLASS
	if i > len(q) {
		return nil
	}
	resp := make([]byte, i, i+64)
	copy(resp, q[:i])
	binary.BigEndian.PutUint16(resp[2:4], 0x8000|0x0080|(flags&0x0100)) // QR, RA, RD as asked
	binary.BigEndian.PutUint16(resp[6:8], 0)                            // ANCOUNT
	binary.BigEndian.PutUint16(resp[8:10], 1)                           // NSCOUNT: the SOA
	binary.BigEndian.PutUint16(resp[10:12], 0)                          // ARCOUNT
	return appendSOA(resp)
}

// appendSOA appends an SOA record owned by the question's name, as if that
// name were its own zone's apex. Every name in it is a compression pointer
// to the question's name at offset 12, so none can exceed 255 bytes.
func appendSOA(b []byte) []byte {
	const qname = 0xc000 | 12
	b = binary.BigEndian.AppendUint16(b, qname) // owner
	b = binary.BigEndian.AppendUint16(b, 6)     // TYPE SOA
	b = binary.BigEndian.AppendUint16(b, 1)     // CLASS IN
	b = binary.BigEndian.AppendUint32(b, negativeTTL)
	b = binary.BigEndian.AppendUint16(b, 2+2+5*4) // RDLENGTH
	b = binary.BigEndian.AppendUint16(b, qname)   // MNAME
	b = binary.BigEndian.AppendUint16(b, qname)   // RNAME
	// SERIAL, REFRESH, RETRY, EXPIRE, MINIMUM
	for _, v := range []uint32{1, 3600, 600, 86400, negativeTTL} {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b
}
