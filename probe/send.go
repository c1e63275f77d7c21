// SPDX-License-Identifier: MIT

package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/dualmx/dualmx/router"
)

// Sender hands the probe to the old host, as any outside sender would.
type Sender struct {
	// Via is the old host's SMTP server as host:port. Empty means the
	// recipient domain's MX hosts on port 25, in preference order.
	Via      string
	Resolver *net.Resolver // nil means net.DefaultResolver
	Helo     string
	Timeout  time.Duration // per connection; 0 means 1 minute
}

// Send delivers msg from from to to and returns the server that took it.
func (s Sender) Send(ctx context.Context, from, to string, msg []byte) (string, error) {
	hosts, err := s.hosts(ctx, to)
	if err != nil {
		return "", err
	}
	var errs []error
	for _, h := range hosts {
		err := s.sendOne(ctx, h, from, to, msg)
		if err == nil {
			return h, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", h, err))
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			break // a permanent answer from one MX is the domain's answer
		}
	}
	return "", fmt.Errorf("probe: send to %s: %w", to, errors.Join(errs...))
}

func (s Sender) hosts(ctx context.Context, to string) ([]string, error) {
	if s.Via != "" {
		if _, _, err := net.SplitHostPort(s.Via); err != nil {
			return nil, fmt.Errorf("probe: --via %q: want HOST:PORT", s.Via)
		}
		return []string{s.Via}, nil
	}
	_, domain, ok := strings.Cut(to, "@")
	if !ok {
		return nil, fmt.Errorf("probe: %q is not an address", to)
	}
	res := s.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	mxs, err := res.LookupMX(ctx, domain)
	if err != nil || len(mxs) == 0 {
		return nil, fmt.Errorf("probe: MX of %s: %v; name the old host with --via HOST:PORT", domain, err)
	}
	sort.SliceStable(mxs, func(i, j int) bool { return mxs[i].Pref < mxs[j].Pref })
	var out []string
	for _, mx := range mxs {
		out = append(out, net.JoinHostPort(strings.TrimSuffix(mx.Host, "."), "25"))
	}
	return out, nil
}

func (s Sender) sendOne(ctx context.Context, hostport, from, to string, msg []byte) error {
	timeout := s.Timeout
	if timeout == 0 {
		timeout = time.Minute
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	_ = conn.SetDeadline(time.Now().Add(timeout))
	c := smtp.NewClient(conn)
	defer c.Close()
	helo := s.Helo
	if helo == "" {
		helo = "localhost"
	}
	if err := c.Hello(helo); err != nil {
		return err
	}
	// Plain SMTP, as the MX must take from anyone: the probe carries no
	// secret worth protecting (a marker is good for one nonce and address).
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(to, nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// Source is what Wait reads; *router.Store is one.
type Source interface {
	Get(ctx context.Context, address string) (router.Address, error)
	Evidence(ctx context.Context, address string) ([]router.Evidence, error)
	Audit(ctx context.Context, address string) ([]router.AuditEntry, error)
}

// ErrTimeout is returned by Wait when no probe arrived in time.
var ErrTimeout = errors.New("the probe did not arrive")

// Wait polls src until the probe with m's nonce is recorded as verified, or
// recorded as misrouted, or ctx ends. The error explains what to check.
func Wait(ctx context.Context, src Source, m Marker, poll time.Duration) (router.Evidence, error) {
	if poll <= 0 {
		poll = time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		ev, err := src.Evidence(ctx, m.Address)
		if err != nil && ctx.Err() == nil {
			return router.Evidence{}, err
		}
		for _, e := range ev {
			if e.Kind == router.ForwardVerified && e.Ref == m.Nonce {
				return e, nil
			}
		}
		if au, err := src.Audit(ctx, m.Address); err == nil {
			for _, e := range au {
				if e.Action == ActionMisrouted && strings.Contains(e.Detail, m.Nonce) {
					return router.Evidence{}, fmt.Errorf("%w through the right forward: %s; fix the forward on the old host so that %s goes to its own alias", ErrTimeout, e.Detail, m.Address)
				}
			}
		}
		select {
		case <-ctx.Done():
			return router.Evidence{}, advice(src, m)
		case <-t.C:
		}
	}
}

// advice lists, most likely first, why a probe would not arrive.
func advice(src Source, m Marker) error {
	a, err := src.Get(context.Background(), m.Address)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTimeout, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, " at the relay in time (probe %s, sent %s). Check, in this order:\n", m.Nonce, m.Sent.Local().Format("15:04:05"))
	n := 1
	if !a.State.Accepts() {
		fmt.Fprintf(&b, "  %d. %s is %s, so the relay refuses its mail: dualmx address flip %s forwarding\n", n, a.Address, a.State, a.Address)
		n++
	}
	fmt.Fprintf(&b, "  %d. forward not set: the old host must forward %s to %s\n", n, a.Address, a.Alias)
	fmt.Fprintf(&b, "  %d. wrong alias: the forward must name exactly %s (a typo makes the relay refuse it; the old host then bounces the probe to its sender)\n", n+1, a.Alias)
	fmt.Fprintf(&b, "  %d. relay not reachable: the old host must reach this relay on port 25 at the MX of %s; see the old host's queue and dualmx's log\n", n+2, domainOf(a.Alias))
	return fmt.Errorf("%w%s", ErrTimeout, strings.TrimRight(b.String(), "\n"))
}

func domainOf(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}
