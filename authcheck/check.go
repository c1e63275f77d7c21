// SPDX-License-Identifier: MIT

// Package authcheck records what a message looked like when it reached dualmx:
// DKIM, SPF, DMARC and the incoming ARC chain, as an Authentication-Results
// field and as metrics. Nothing here refuses mail; every failure, DNS or parse,
// is a verdict in the field.
package authcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"blitiri.com.ar/go/spf"
	"github.com/emersion/go-msgauth/dkim"

	"github.com/dualmx/dualmx/internal/headerblock"
	"github.com/dualmx/dualmx/metrics"
)

// errUnreadable marks a failure to read the message from the spool: a
// temporary error of ours, not a verdict on the sender.
var errUnreadable = errors.New("message unreadable")

// DefaultTimeout bounds the lookups for one message when Checker.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxSignatures caps the DKIM signatures verified per message; each costs a
// DNS lookup and a goroutine, and the sender chooses how many there are.
const maxSignatures = 8

// Checker verifies messages on arrival. The zero value needs AuthServID set.
type Checker struct {
	AuthServID string // dualmx's hostname, the authserv-id of the fields it writes
	// Lookup answers the checks' DNS questions, usually a *Cache. nil means
	// Resolver, or without that a Cache of the system's servers shared by
	// every Checker.
	Lookup   Lookup
	Resolver *net.Resolver // used, uncached, only when Lookup is nil
	Timeout  time.Duration // bound on all lookups for one message; 0 means DefaultTimeout
	// ARC validates the incoming chain: cv of the highest instance (none, pass,
	// fail), that instance, and a short reason. nil records arc=none.
	ARC     func(ctx context.Context, msg io.Reader) (cv string, instance int, reason string)
	Metrics *metrics.Metrics // nil: no metrics
}

// Input is one message as it arrived.
type Input struct {
	ClientIP net.IP
	Helo     string
	MailFrom string // reverse-path without brackets, "" for <>
	// Message opens the message from its first byte. Check calls it once per
	// pass (DKIM, ARC), possibly from two goroutines at once, and closes what it returns.
	Message func() (io.ReadCloser, error)
}

// DKIMResult is the verdict on one DKIM-Signature field.
type DKIMResult struct {
	Domain   string // d=
	Selector string // s=
	B        string // the first 8 characters of b=, telling apart two signatures of one domain (RFC 6008)
	Result   string // pass, fail, temperror, permerror
	Aligned  bool   // d= aligns with the From domain under the DMARC record's adkim= (relaxed without a record)
	Reason   string // short, published in the field
	Err      error  // the whole story, for the log
}

// Result is what Check found.
type Result struct {
	DKIM []DKIMResult
	// AuthorDKIM is intact (an aligned signature verifies), broken (aligned
	// signatures are present and none verifies), absent (no aligned signature),
	// or unknown (every aligned signature hit a temporary DNS error: it says
	// nothing about whether the old host altered the message).
	AuthorDKIM string

	SPF       string // pass, fail, softfail, neutral, none, temperror, permerror
	SPFDomain string // the identity checked: MAIL FROM's domain, or HELO's for <>
	SPFErr    error

	FromDomain  string
	DMARC       string // pass, fail, none, temperror, permerror
	DMARCPolicy string // p=, or sp= when the record came from the organisational domain; "" without a record
	DMARCErr    error

	// DMARCSPFOnly: DMARC passed on arrival only through SPF alignment. SPF
	// cannot align once dualmx forwards, so at Microsoft 365 only a trusted ARC
	// seal or Enhanced Filtering can keep such a message's verdict.
	DMARCSPFOnly bool

	ARC         string // none, pass, fail
	ARCInstance int
	ARCReason   string

	// Field is the complete Authentication-Results field, folded and CRLF-terminated.
	Field string
	// AARPayload is Field's value (authserv-id and results, no trailing CRLF),
	// for ARC-Authentication-Results after its "i=N; ".
	AARPayload string
}

// Check verifies in. It never fails and never panics: a lookup or parse error
// is recorded as temperror or permerror in the Result.
func (c *Checker) Check(ctx context.Context, in Input) Result {
	start := time.Now()
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r := rooted{c.lookup()}

	var res Result
	var fromErr error
	// SPF and ARC run beside DKIM so the message's lookups overlap: the
	// Timeout bounds the whole, not each part.
	var wg sync.WaitGroup
	wg.Go(func() {
		guard(func() { res.SPF, res.SPFDomain, res.SPFErr = checkSPF(ctx, r, in) },
			func(err error) { res.SPF, res.SPFErr = "permerror", err })
	})
	wg.Go(func() {
		guard(func() { res.ARC, res.ARCInstance, res.ARCReason = c.checkARC(ctx, in) },
			func(err error) { res.ARC, res.ARCInstance, res.ARCReason = "fail", 0, "internal error" })
	})
	guard(func() { res.FromDomain, fromErr, res.DKIM = checkDKIM(ctx, r, in) },
		func(err error) {
			fromErr = err
			res.DKIM = []DKIMResult{{Result: "permerror", Reason: "internal error", Err: err}}
		})
	wg.Wait()
	guard(func() { evaluateDMARC(ctx, r, &res, fromErr) },
		func(err error) {
			res.DMARC, res.DMARCErr = "permerror", err
			if res.AuthorDKIM == "" {
				res.AuthorDKIM = "unknown"
			}
		})

	res.AARPayload = formatPayload(c.AuthServID, &res, in)
	res.Field = "Authentication-Results: " + res.AARPayload + "\r\n"
	c.observe(&res, time.Since(start))
	return res
}

// systemCache serves Checkers given neither Lookup nor Resolver; one for
// the process, so that they share what it holds.
var systemCache = sync.OnceValue(func() *Cache { return NewCache("") })

// DNS returns what the checks ask their DNS questions of, so that other
// lookups about the same message (the ARC chain's keys) share its cache.
func (c *Checker) DNS() Lookup { return c.lookup() }

func (c *Checker) lookup() Lookup {
	switch {
	case c.Lookup != nil:
		return c.Lookup
	case c.Resolver != nil:
		return c.Resolver
	}
	return systemCache()
}

// guard turns a panic in f into a verdict through onPanic, so that one bad
// message (or a bug in a library) costs its verdict, not the process.
func guard(f func(), onPanic func(error)) {
	defer func() {
		if p := recover(); p != nil {
			onPanic(fmt.Errorf("panic: %v", p))
		}
	}()
	f()
}

func checkSPF(ctx context.Context, r rooted, in Input) (result, domain string, err error) {
	sender := in.MailFrom
	domain = domainOf(sender)
	if domain == "" {
		// RFC 7208 §2.4: for <> the identity is postmaster@HELO.
		domain = normDomain(in.Helo)
		sender = "postmaster@" + domain
	}
	if !validDomain(domain) {
		return "none", domain, fmt.Errorf("no checkable domain in MAIL FROM %q or HELO %q", in.MailFrom, in.Helo)
	}
	res, err := spf.CheckHostWithSender(in.ClientIP, in.Helo, sender, spf.WithResolver(r), spf.WithContext(ctx))
	if res != spf.TempError && res != spf.PermError {
		err = nil // the library reports which mechanism matched as an error
	}
	return string(res), domain, err
}

func (c *Checker) checkARC(ctx context.Context, in Input) (string, int, string) {
	if c.ARC == nil {
		return "none", 0, ""
	}
	rc, err := in.Message()
	if err != nil {
		return "fail", 0, "message unreadable"
	}
	defer rc.Close()
	cv, inst, reason := c.ARC(ctx, rc)
	switch cv = strings.ToLower(strings.TrimSpace(cv)); cv {
	case "none", "pass", "fail":
		return cv, inst, reason
	default:
		return "fail", inst, "unknown cv"
	}
}

// checkDKIM reads the header (for From and the signatures' tags) and verifies
// every signature in one streaming pass over the body.
func checkDKIM(ctx context.Context, r rooted, in Input) (from string, fromErr error, sigs []DKIMResult) {
	if in.Message == nil {
		err := errors.New("no message")
		return "", err, []DKIMResult{{Result: "permerror", Reason: "no message", Err: err}}
	}
	rc, err := in.Message()
	if err != nil {
		// Our own spool failing us is transient, not the sender's fault.
		err = fmt.Errorf("%w: %w", errUnreadable, err)
		return "", err, []DKIMResult{{Result: "temperror", Reason: "message unreadable", Err: err}}
	}
	defer rc.Close()
	br := readers.Get().(*bufio.Reader)
	br.Reset(rc)
	defer func() {
		br.Reset(nil)
		readers.Put(br)
	}()
	h, err := readHeader(br)
	if errors.Is(err, headerblock.ErrTooLarge) {
		return "", err, []DKIMResult{{Result: "permerror", Reason: "header too large", Err: err}}
	} else if err != nil {
		err = fmt.Errorf("%w: %w", errUnreadable, err)
		return "", err, []DKIMResult{{Result: "temperror", Reason: "message unreadable", Err: err}}
	}
	fields := splitFields(h)
	from, fromErr = fromDomain(fields)

	var tags []sigTags
	for _, f := range fields {
		if strings.EqualFold(f.name, "DKIM-Signature") {
			tags = append(tags, parseSigTags(f.value))
		}
	}
	if len(tags) == 0 {
		return from, fromErr, nil
	}
	if len(tags) > maxSignatures {
		tags = tags[:maxSignatures]
	}
	verifs, err := dkim.VerifyWithOptions(io.MultiReader(bytes.NewReader(h), br), &dkim.VerifyOptions{
		LookupTXT:        func(name string) ([]string, error) { return r.LookupTXT(ctx, name) },
		MaxVerifications: maxSignatures,
	})
	if errors.Is(err, dkim.ErrTooManySignatures) {
		err = nil
	}
	sigs = make([]DKIMResult, len(tags))
	for i, t := range tags {
		sigs[i] = DKIMResult{Domain: t.d, Selector: t.s, B: t.b[:min(8, len(t.b))]}
		switch {
		case err != nil || len(verifs) != len(tags):
			// go-msgauth clears the per-signature error when reading the
			// body failed, so its verdicts cannot be trusted then.
			sigs[i].Result, sigs[i].Reason, sigs[i].Err = "temperror", "message unreadable", err
		default:
			sigs[i].Result, sigs[i].Reason, sigs[i].Err = dkimVerdict(verifs[i].Err)
			if d := normDomain(verifs[i].Domain); d != "" {
				sigs[i].Domain = d
			}
		}
	}
	return from, fromErr, sigs
}

func dkimVerdict(err error) (result, reason string, _ error) {
	switch {
	case err == nil:
		return "pass", "", nil
	case dkim.IsTempFail(err):
		return "temperror", shortReason(err), err
	case dkim.IsPermFail(err):
		return "permerror", shortReason(err), err
	default:
		return "fail", shortReason(err), err
	}
}

// shortReason keeps the head of a go-msgauth error ("body hash did not
// verify", "key unavailable"): the tail may name our resolver's address,
// which is no business of the recipient's.
func shortReason(err error) string {
	s := strings.TrimPrefix(err.Error(), "dkim: ")
	s, _, _ = strings.Cut(s, ": ")
	return s
}

func (c *Checker) observe(res *Result, d time.Duration) {
	m := c.Metrics
	if m == nil {
		return
	}
	m.AuthAuthorDKIM.WithLabelValues(res.AuthorDKIM).Inc()
	m.AuthSPF.WithLabelValues(res.SPF).Inc()
	m.AuthDMARC.WithLabelValues(res.DMARC).Inc()
	m.AuthARC.WithLabelValues(res.ARC).Inc()
	if res.DMARCSPFOnly {
		m.AuthDMARCSPFOnly.Inc()
	}
	m.AuthCheckDuration.Observe(d.Seconds())
}
