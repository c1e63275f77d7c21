// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"errors"
	"net"
	"sort"
	"strconv"
	"strings"
)

// MXConfig configures the MX target. Zero fields take the defaults noted.
type MXConfig struct {
	Client
	Port int // default 25; tests point it elsewhere
	// LookupMX answers MX queries; default Resolver.LookupMX.
	LookupMX func(ctx context.Context, domain string) ([]*net.MX, error)
}

// MX delivers to a recipient's mail exchangers, found by MX lookup. It is
// only ever used for DSNs dualmx generated itself and for bounces returned
// to an address recovered from a valid SRS token of ours, so the relay
// stays closed by construction. Arbitrary senders' servers cannot be
// expected to present certificates we can verify, hence opportunistic TLS.
type MX struct {
	tmpl   dialer // helo and timeouts
	port   int
	lookup func(ctx context.Context, domain string) ([]*net.MX, error)
}

// NewMX prepares delivery by MX lookup.
func NewMX(cfg MXConfig) *MX {
	cfg.setDefaults()
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.LookupMX == nil {
		cfg.LookupMX = cfg.Resolver.LookupMX
	}
	return &MX{tmpl: cfg.dialer(), port: cfg.Port, lookup: cfg.LookupMX}
}

// Start begins a transaction to the recipients' mail exchangers.
func (t *MX) Start(_ context.Context, msg Message) (Delivery, error) {
	if err := checkPath(msg.From); err != nil {
		return nil, err
	}
	return &mxDelivery{txn: txn{msg: msg}, t: t}, nil
}

type mxDelivery struct {
	txn
	t *MX
}

// Commit runs one transaction per recipient domain.
func (d *mxDelivery) Commit(ctx context.Context) Result {
	byDomain := map[string][]int{}
	var domains []string
	for i, r := range d.rcpts {
		domain := strings.ToLower(r[strings.LastIndexByte(r, '@')+1:])
		if byDomain[domain] == nil {
			domains = append(domains, domain)
		}
		byDomain[domain] = append(byDomain[domain], i)
	}
	out := d.outcomes()
	for _, domain := range domains {
		idx := byDomain[domain]
		sub := &txn{msg: d.msg, header: d.header, body: d.body}
		for _, i := range idx {
			sub.rcpts = append(sub.rcpts, d.rcpts[i])
		}
		got, err := d.t.sendDomain(ctx, sub, domain)
		for j, i := range idx {
			if got != nil {
				out[i] = got[j]
			} else {
				out[i].Err = Classify(err)
			}
		}
	}
	return Result{Rcpts: out, Header: d.header}
}

func (t *MX) sendDomain(ctx context.Context, x *txn, domain string) ([]Outcome, error) {
	if domain == "" {
		return nil, PermError("5.1.3", "recipient has no domain")
	}
	mxs, err := t.lookup(ctx, domain)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, PermError("5.1.2", "domain %s does not exist", domain)
	}
	if err != nil && len(mxs) == 0 {
		return nil, TempError("4.4.3", "MX lookup for %s: %v", domain, err)
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	hosts := make([]string, 0, len(mxs))
	for _, mx := range mxs {
		hosts = append(hosts, strings.TrimSuffix(mx.Host, "."))
	}
	if len(hosts) == 1 && hosts[0] == "" {
		return nil, PermError("5.1.10", "domain %s accepts no mail (null MX)", domain)
	}
	if len(hosts) == 0 {
		hosts = []string{domain} // RFC 5321 5.1: the implicit MX
	}
	lastErr := error(TempError("4.4.4", "no usable MX for %s", domain))
	for _, h := range hosts {
		d := t.tmpl
		d.addr = net.JoinHostPort(h, strconv.Itoa(t.port))
		d.serverName = h
		d.policy = TLSOpportunistic
		c, err := d.connect(ctx)
		if err != nil {
			lastErr = err
			if isReply(err) && !Classify(err).Temporary {
				return nil, err
			}
			continue
		}
		out, _, err := transact(ctx, c, x, x.msg.From, d.data)
		c.quit()
		if err == nil || isReply(err) {
			return out, err
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}
