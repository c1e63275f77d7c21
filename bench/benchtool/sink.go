// SPDX-License-Identifier: MIT

package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"
)

// sinkCount returns the message count of the last complete record in
// smtp-sink -c output, 0 when there is none yet. smtp-sink writes one record
// "sess=N quit=N mesg=N" followed by a carriage return per event.
func sinkCount(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	const tail = 512
	off := max(st.Size()-tail, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return 0, err
	}
	end := bytes.LastIndexByte(buf, '\r')
	if end < 0 {
		return 0, nil
	}
	rec := buf[:end]
	if i := bytes.LastIndexByte(rec, '\r'); i >= 0 {
		rec = rec[i+1:]
	}
	i := bytes.LastIndex(rec, []byte("mesg="))
	if i < 0 {
		return 0, fmt.Errorf("%s: unexpected smtp-sink counter record %q", path, rec)
	}
	n, err := strconv.Atoi(string(bytes.TrimSpace(rec[i+len("mesg="):])))
	if err != nil {
		return 0, fmt.Errorf("%s: unexpected smtp-sink counter record %q", path, rec)
	}
	return n, nil
}

// cmdWaitSink waits until the smtp-sink counter reaches -want and prints the
// moment it saw that, in Unix nanoseconds, so run.sh can time a load from the
// first byte sent until the last message arrived at the sink.
func cmdWaitSink(args []string) error {
	fs := flag.NewFlagSet("waitsink", flag.ExitOnError)
	counter := fs.String("counter", "", "file with smtp-sink -c output")
	want := fs.Int("want", 0, "message count to wait for")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	every := fs.Duration("every", 5*time.Millisecond, "polling interval")
	fs.Parse(args)
	if *counter == "" || *want < 1 {
		return errors.New("waitsink: -counter and -want are required")
	}
	deadline := time.Now().Add(*timeout)
	for {
		n, err := sinkCount(*counter)
		if err != nil {
			return err
		}
		if n >= *want {
			fmt.Printf("end_unix_ns=%d\ncount=%d\n", time.Now().UnixNano(), n)
			return nil
		}
		if time.Now().After(deadline) {
			fmt.Printf("count=%d\n", n)
			return fmt.Errorf("waitsink: the sink counted %d of %d messages after %v", n, *want, *timeout)
		}
		time.Sleep(*every)
	}
}

// cmdSinkCount prints the current count.
func cmdSinkCount(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: benchtool sinkcount FILE")
	}
	n, err := sinkCount(args[0])
	if err != nil {
		return err
	}
	fmt.Println(n)
	return nil
}
