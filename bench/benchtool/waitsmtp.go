// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/textproto"
	"time"
)

// cmdWaitSMTP waits until an SMTP server at -addr answers with a 220
// greeting, then says QUIT. It is how run.sh knows a server it started is
// ready, without sleeping for a guessed time. It prints the moment the
// greeting came, in Unix nanoseconds, so run.sh can time a start.
func cmdWaitSMTP(args []string) error {
	fs := flag.NewFlagSet("waitsmtp", flag.ExitOnError)
	addr := fs.String("addr", "", "SMTP address host:port")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	every := fs.Duration("every", 50*time.Millisecond, "interval between tries")
	fs.Parse(args)
	if *addr == "" {
		return errors.New("waitsmtp: -addr is required")
	}
	deadline := time.Now().Add(*timeout)
	var last error
	for time.Now().Before(deadline) {
		if last = greet(*addr); last == nil {
			fmt.Printf("greeted_unix_ns=%d\n", time.Now().UnixNano())
			return nil
		}
		time.Sleep(*every)
	}
	return fmt.Errorf("waitsmtp: %s gave no 220 greeting within %v: %v", *addr, *timeout, last)
}

func greet(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := textproto.NewConn(c)
	if _, _, err := tc.ReadResponse(220); err != nil {
		return err
	}
	if err := tc.PrintfLine("QUIT"); err != nil {
		return err
	}
	_, _, err = tc.ReadResponse(221)
	return err
}
