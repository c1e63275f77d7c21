// SPDX-License-Identifier: MIT

// Command benchtool holds the small helpers bench/run.sh needs that the shell
// and Postfix's smtp-source cannot do well: picking free loopback ports,
// waiting for a server or for smtp-sink's counter, holding many idle SMTP
// sessions open while reading the relay's RSS, relaying one very large
// message while sampling the relay's RSS, and standing in for a next hop that
// is down or throttles while counting the connections it gets.
//
// It is a benchmark helper, not part of dualmx; it prints key=value lines that
// run.sh parses.
package main

import (
	"fmt"
	"os"
)

func usage() {
	fmt.Fprint(os.Stderr, `usage: benchtool COMMAND [flags]

commands:
  ports N           print N distinct free TCP ports on 127.0.0.1, below the ephemeral range
  waitsmtp [flags]  wait until an SMTP server answers with 220
  waitsink [flags]  wait until an smtp-sink -c counter reaches a count; print when
  sinkcount FILE    print the message count in an smtp-sink -c counter file
  idle [flags]      open many SMTP sessions (EHLO, then idle); report the relay's RSS
  bigmsg [flags]    relay one large message; report the relay's RSS before and at peak
  rss PID           print VmRSS and VmHWM of PID in KiB
  fsyncprobe DIR N  time N serial create+write 4 KiB+fsync+rename+dir fsync in DIR
  dns -addr A       a resolver stand-in answering every query with NODATA at once
  target [flags]    a next hop that is down (421 to every connection) or throttles
                    (451 4.7.500 to every second connection); counts connections
  rsswatch [flags]  sample a process's VmRSS until stopped; print the peak and VmHWM
  tcpstat           print the TCP connection counters of /proc/net/snmp

Run "benchtool COMMAND -h" for the flags of a command.
`)
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	commands := map[string]func([]string) error{
		"ports":      cmdPorts,
		"waitsmtp":   cmdWaitSMTP,
		"waitsink":   cmdWaitSink,
		"sinkcount":  cmdSinkCount,
		"idle":       cmdIdle,
		"bigmsg":     cmdBigMsg,
		"rss":        cmdRSS,
		"fsyncprobe": cmdFsyncProbe,
		"dns":        cmdDNS,
		"target":     cmdTarget,
		"rsswatch":   cmdRSSWatch,
		"tcpstat":    cmdTCPStat,
	}
	run, ok := commands[os.Args[1]]
	if !ok {
		usage()
	}
	if err := run(os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}
