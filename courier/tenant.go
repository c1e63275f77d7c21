// SPDX-License-Identifier: MIT

package courier

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/dualmx/dualmx/dane"
)

// Client configures the SMTP client side both targets share. Zero fields
// take the defaults noted.
type Client struct {
	HelloName      string        // EHLO name; default the host name
	DialTimeout    time.Duration // default 30s
	CommandTimeout time.Duration // default 5m
	DataTimeout    time.Duration // sending the body and waiting for the final reply; default 10m
	// Resolver answers the lookups of the next hop's addresses (and MX
	// records); nil means net.DefaultResolver.
	Resolver *net.Resolver
}

func (c *Client) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.HelloName == "" {
		c.HelloName, _ = os.Hostname()
		if c.HelloName == "" {
			c.HelloName = "localhost"
		}
	}
	def(&c.DialTimeout, 30*time.Second)
	def(&c.CommandTimeout, 5*time.Minute)
	def(&c.DataTimeout, 10*time.Minute)
	if c.Resolver == nil {
		c.Resolver = net.DefaultResolver
	}
}

// dialer is what a connection to next hops under c needs; the caller adds
// the address, the name the certificate must carry and the TLS policy.
func (c *Client) dialer() dialer {
	return dialer{helo: c.HelloName, dial: c.DialTimeout, command: c.CommandTimeout, data: c.DataTimeout, resolver: c.Resolver}
}

// TenantConfig configures the Tenant target. Zero fields take the defaults
// noted.
type TenantConfig struct {
	Client
	Host    string
	Port    int    // default 25
	TLS     string // TLSRequire (default), TLSDane, TLSOpportunistic or TLSNone
	RootCAs *x509.CertPool
	// DANE looks up and validates the host's TLSA records; required with
	// TLSDane, whose connections go only to the addresses it validated.
	DANE *dane.Resolver
	// MaxIdle bounds the idle connections kept for reuse; set it to the
	// number of parallel deliveries. Default 4.
	MaxIdle int
	// IdleTimeout closes a pooled connection idle for longer, before the
	// endpoint closes it on its side; default 30s.
	IdleTimeout time.Duration
	// IPFamily restricts the host's addresses to FamilyIPv4 or FamilyIPv6;
	// "" or FamilyAny uses both.
	IPFamily string
	// BadAddressFor is how long an address that failed to connect is
	// tried after the others; default 5m.
	BadAddressFor time.Duration
	// Health configures how the tenant's health is judged: suspension,
	// probes and the concurrency window. MaxConcurrency defaults to
	// MaxIdle.
	Health HealthConfig
	Now    func() time.Time // default time.Now
}

// Tenant delivers to the one configured endpoint, the tenant's inbound
// mail server, with STARTTLS under the configured policy, reusing
// connections. Every connection to the endpoint is taken in send: the place
// for anything that must see them all.
type Tenant struct {
	d      dialer
	host   string
	port   int
	dane   *dane.Resolver
	pool   *pool
	health *Health
	book   *addrBook
}

// NewTenant prepares delivery to the endpoint cfg names; nothing is dialled
// before the first transaction. An unknown TLS policy or address family is
// refused: a policy the courier does not know would otherwise be one
// without checks.
func NewTenant(cfg TenantConfig) (*Tenant, error) {
	cfg.setDefaults()
	if cfg.Port == 0 {
		cfg.Port = 25
	}
	if cfg.TLS == "" {
		cfg.TLS = TLSRequire
	}
	switch cfg.TLS {
	case TLSRequire, TLSOpportunistic, TLSNone:
	case TLSDane:
		if cfg.DANE == nil {
			return nil, errors.New("courier: TLS policy dane without a DANE resolver")
		}
	default:
		return nil, fmt.Errorf("courier: unknown TLS policy %q", cfg.TLS)
	}
	switch cfg.IPFamily {
	case "", FamilyAny, FamilyIPv4, FamilyIPv6:
	default:
		return nil, fmt.Errorf("courier: unknown address family %q", cfg.IPFamily)
	}
	if cfg.MaxIdle <= 0 {
		cfg.MaxIdle = 4
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Health.MaxConcurrency <= 0 {
		cfg.Health.MaxConcurrency = cfg.MaxIdle
	}
	if cfg.Health.Now == nil {
		cfg.Health.Now = cfg.Now
	}
	d := cfg.dialer()
	d.addr = net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	d.serverName, d.policy, d.roots = cfg.Host, cfg.TLS, cfg.RootCAs
	if cfg.BadAddressFor <= 0 {
		cfg.BadAddressFor = 5 * time.Minute
	}
	t := &Tenant{d: d, host: cfg.Host, port: cfg.Port, dane: cfg.DANE, pool: newPool(cfg.MaxIdle, cfg.IdleTimeout, cfg.Now), health: NewHealth(cfg.Health),
		book: &addrBook{host: cfg.Host, family: cfg.IPFamily, resolver: cfg.Resolver, badFor: cfg.BadAddressFor, now: cfg.Now}}
	t.health.setOnChange(t.fitPool)
	return t, nil
}

// Health is the tenant's health, shared by every delivery; the queue reads
// it to park mail while the tenant is suspended and to bound its sessions.
func (t *Tenant) Health() *Health { return t.health }

// fitPool closes the idle connections of a tenant that was just
// suspended: they lead nowhere, and a probe must be a connection of its
// own. A smaller window keeps them: a session that works is worth more
// than a new one, which a throttling target may refuse.
func (t *Tenant) fitPool() {
	if t.health.Suspended() {
		t.pool.trim(0)
	}
}

// Start begins a transaction to the tenant.
func (t *Tenant) Start(_ context.Context, msg Message) (Delivery, error) {
	if err := checkSender(msg.From); err != nil {
		return nil, err
	}
	return &tenantDelivery{txn: txn{msg: msg}, t: t}, nil
}

type tenantDelivery struct {
	txn
	t *Tenant
}

func (d *tenantDelivery) Commit(ctx context.Context) Result {
	out, err := d.t.send(ctx, &d.txn)
	return d.result(out, err)
}

// send runs x on a pooled connection, or a new one, if the tenant's health
// admits it, and tells the health what the session showed.
func (t *Tenant) send(ctx context.Context, x *txn) ([]Outcome, error) {
	tk, err := t.health.admit(!x.msg.Parked)
	if err != nil {
		return nil, err
	}
	out, o, reason, err := t.try(ctx, x)
	if ctx.Err() != nil {
		o = outcomeNeutral
	}
	t.health.done(tk, o, reason)
	return out, err
}

// try runs x. A pooled connection the endpoint has closed meanwhile fails
// before anything of the message was sent; the message then goes out on a
// fresh one.
func (t *Tenant) try(ctx context.Context, x *txn) ([]Outcome, outcome, string, error) {
	for try := 0; ; try++ {
		c := t.pool.get(t.d.addr)
		reused := c != nil
		if c == nil {
			var err error
			if c, err = t.dial(ctx); err != nil {
				e := Classify(err)
				if e.Signal == SignalThrottle {
					return nil, outcomeThrottle, e.Reply(), e
				}
				return nil, outcomeFailed, e.Reply(), e
			}
		}
		out, reusable, err := transact(ctx, c, x, x.msg.From, t.d.data)
		if errors.Is(err, errStale) && reused && try == 0 && ctx.Err() == nil {
			c.close()
			continue
		}
		o, reason := judge(out, err)
		family := signalled(out, err, SignalFamily) || signalled(out, err, SignalFamilyAuth)
		if family {
			// The target refuses mail (or this message) over this
			// address family: the next attempt takes the other one.
			if ip, ok := remoteIP(c.conn); ok {
				t.book.markFamilyBad(ip)
			}
		}
		switch {
		case o == outcomeThrottle, family:
			// A session the target throttled stays throttled: say QUIT
			// rather than send it the next message.
			go c.quit()
		case reusable && ctx.Err() == nil:
			t.pool.put(c)
		default:
			c.close()
		}
		if err != nil {
			return out, o, reason, Classify(err)
		}
		return out, o, reason, nil
	}
}

// dial connects to the first of the host's addresses that starts a
// session: one that cannot be reached, whose front end is busy (a 4xx
// greeting) or fails TLS, or that refuses this address family is
// remembered as bad and the next is tried. A 5xx reply from the service
// itself ends the attempt: the host's other addresses are the same
// service. Each address tried counts as a connection attempt.
//
// Under TLSDane the addresses and the TLS configuration come from the
// validated lookup alone: anything short of usable, signed TLSA records is
// a temporary failure, an empty list of validated addresses is one too,
// and nothing falls back to another policy or to the unvalidated resolver.
func (t *Tenant) dial(ctx context.Context) (*client, error) {
	d := t.d
	var all []netip.Addr
	if d.policy == TLSDane {
		res, err := t.dane.Lookup(ctx, t.host, t.port)
		if err != nil {
			t.health.connected(connDNSFailed)
			return nil, lookupError(err, "DANE lookup for %s: %v", t.host, err)
		}
		if err := res.Err(); err != nil {
			t.health.connected(connFailed)
			return nil, &Error{Status: "4.7.5", Message: err.Error(), Temporary: true, Err: err}
		}
		all = res.Addrs
		d.daneTLS = res.TLSConfig()
	} else {
		var err error
		if all, err = t.book.resolve(ctx); err != nil {
			t.health.connected(connDNSFailed)
			return nil, err
		}
	}
	addrs, err := t.book.order(all)
	if err != nil {
		t.health.connected(connDNSFailed)
		return nil, err
	}
	var last error
	var refused [2]bool // families refused in this attempt
	for _, a := range addrs {
		if refused[familyOf(a)] {
			continue
		}
		d.dialAddr = netip.AddrPortFrom(a, uint16(t.port)).String()
		c, err := d.connect(ctx)
		if err == nil {
			t.health.connected(connOK)
			t.book.markGood(a)
			return c, nil
		}
		last = err
		if ctx.Err() != nil {
			return nil, err
		}
		e := Classify(err)
		if e.Signal == SignalThrottle {
			t.health.connected(connThrottled)
		} else {
			t.health.connected(connFailed)
		}
		switch {
		case e.Signal == SignalFamily || e.Signal == SignalFamilyAuth:
			t.book.markFamilyBad(a)
			refused[familyOf(a)] = true
		case addressFault(e):
			t.book.markBad(a)
		default:
			return nil, err
		}
	}
	return nil, last
}

// addressFault reports whether a failure to start a session is one of the
// address tried, which the host's next address may not share: nothing
// answered there or the connection broke, the front end said it is busy
// or closing (a 4xx reply: 421 at the greeting), or TLS failed there
// (STARTTLS missing or refused, a certificate that does not verify or that
// the TLSA records do not name). A 5xx reply speaks for the service.
func addressFault(e *Error) bool { return e.Code < 500 }

// signalled reports whether a transaction's error or any outcome carries s.
func signalled(out []Outcome, err error, s Signal) bool {
	if err != nil && Classify(err).Signal == s {
		return true
	}
	for _, o := range out {
		if o.Err != nil && o.Err.Signal == s {
			return true
		}
	}
	return false
}

// judge says what a transaction showed about the target: a throttling
// reply anywhere in it, a refusal of the relay (its address, its name, its
// address family), a session that broke off, or a target that answered. A
// refusal of this message over the address family (4.7.26) says nothing
// about the target.
func judge(out []Outcome, err error) (outcome, string) {
	var errs []*Error
	if err != nil {
		if !isReply(err) {
			if e := Classify(err); e.Code == 0 && e.Status != "4.4.2" {
				return outcomeOK, "" // a local decision (8BITMIME missing, ...): the target answered
			}
			return outcomeFailed, Classify(err).Reply()
		}
		errs = append(errs, Classify(err))
	}
	for _, o := range out {
		if o.Err != nil {
			errs = append(errs, o.Err)
		}
	}
	for _, e := range errs {
		switch e.Signal {
		case SignalThrottle:
			return outcomeThrottle, e.Reply()
		case SignalBlocked, SignalFamily:
			return outcomeFailed, e.Reply()
		}
	}
	return outcomeOK, ""
}

// Capabilities is what the tenant's endpoint offers a sender.
type Capabilities struct {
	MaxSize      int64 // its SIZE limit; 0 when it names none
	EightBitMIME bool
}

// Capabilities connects to the endpoint as delivery would (the same TLS
// policy and certificate checks) and reports what it offers. smtpd caps its
// own SIZE to the endpoint's, so that a message it accepts is not refused
// for its size downstream.
func (t *Tenant) Capabilities(ctx context.Context) (Capabilities, error) {
	c, err := t.dial(ctx)
	if err != nil {
		return Capabilities{}, Classify(err)
	}
	defer c.quit()
	var caps Capabilities
	if ok, v := c.ext("SIZE"); ok && v != "" {
		caps.MaxSize, _ = strconv.ParseInt(v, 10, 64)
	}
	caps.EightBitMIME, _ = c.ext("8BITMIME")
	return caps, nil
}

// Close says QUIT on every idle connection; a transaction after Close
// still works, on a connection of its own.
func (t *Tenant) Close() { t.pool.closeAll() }
