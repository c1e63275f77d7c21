// SPDX-License-Identifier: MIT

package authcheck

import (
	"context"
	"net"
	"strings"
)

// NewResolver returns the resolver dualmx uses for every lookup. server "" means
// the system's configuration; "HOST:PORT" (config key resolver:) sends every query
// to that server, e.g. a local validating resolver. The caller validates server.
//
// StrictErrors is on because SPF and DMARC must see a timeout on one half of an
// A+AAAA lookup as temperror, not as a shorter address list that turns into fail.
func NewResolver(server string) *net.Resolver {
	if server == "" {
		return &net.Resolver{StrictErrors: true}
	}
	return &net.Resolver{
		PreferGo:     true,
		StrictErrors: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, server)
		},
	}
}

// rooted asks for names as absolute (trailing dot), so the host's resolv.conf
// search list can never turn _dmarc.example.org into _dmarc.example.org.corp.lan
// and hand back someone else's policy. It satisfies spf.DNSResolver.
type rooted struct{ r Lookup }

func root(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

func (r rooted) LookupTXT(ctx context.Context, name string) ([]string, error) {
	return r.r.LookupTXT(ctx, root(name))
}

func (r rooted) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	return r.r.LookupMX(ctx, root(name))
}

func (r rooted) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	return r.r.LookupIPAddr(ctx, root(host))
}

func (r rooted) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	return r.r.LookupAddr(ctx, addr)
}
