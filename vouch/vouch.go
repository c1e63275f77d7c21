// Package vouch computes what dualmx prepends to a forwarded message before
// delivery: an Authentication-Results field recording what it saw on arrival
// and, when sealing is configured, an ARC set vouching for it (RFC 8617).
// It never changes the message itself, so the author's DKIM signature keeps
// verifying; it only returns header fields to put in front.
package vouch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/dualmx/dualmx/arc"
	"github.com/dualmx/dualmx/authcheck"
	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/spool"
)

// Voucher turns a spooled message into the fields to prepend.
type Voucher struct {
	// Check verifies DKIM, SPF and DMARC on arrival; its AuthServID is ours.
	Check authcheck.Checker
	// Sealer adds the ARC set; nil turns sealing off.
	Sealer  *arc.Sealer
	Metrics *metrics.Metrics
	Logger  *slog.Logger
}

// Prepare is a queue.Options.Prepare: body is the spooled message (dualmx's
// Received field and the original bytes) and must also be an io.ReaderAt, so
// the checks can read it in parallel passes without holding it in memory.
func (v *Voucher) Prepare(ctx context.Context, it *spool.Item, body io.ReadSeeker) ([]byte, error) {
	ra, ok := body.(io.ReaderAt)
	if !ok {
		return nil, errors.New("vouch: spooled body does not support ReadAt")
	}
	size, err := body.Seek(0, io.SeekEnd)
	if err != nil {
		return nil, fmt.Errorf("vouch: %w", err)
	}
	open := func() (io.ReadCloser, error) { return io.NopCloser(io.NewSectionReader(ra, 0, size)), nil }

	// The ARC verdict is taken inside the checks, once; the seal needs the
	// whole verdict (instance, cv), so it is kept from that one pass.
	// The checks may give up on a slow pass at their deadline, so the verdict
	// is handed over under a lock and only a finished one is used.
	var mu sync.Mutex
	var prior arc.Result
	var verified bool
	ck := v.Check
	lookup := ck.DNS()
	ck.ARC = func(ctx context.Context, msg io.Reader) (string, int, string) {
		r := arc.Verify(ctx, msg, lookup.LookupTXT)
		mu.Lock()
		prior, verified = r, true
		mu.Unlock()
		return string(r.CV), r.Instance, r.Reason
	}
	res := ck.Check(ctx, authcheck.Input{ClientIP: net.ParseIP(it.ClientIP), Helo: it.Helo, MailFrom: it.From, Message: open})
	mu.Lock()
	prior, done := prior, verified
	mu.Unlock()
	log := v.log().With("id", it.ID)
	log.Info("vouch: arrival checks", "dkim_author", res.AuthorDKIM, "spf", res.SPF, "dmarc", res.DMARC, "arc", res.ARC, "arc_instance", res.ARCInstance)

	fields := []byte(res.Field)
	if v.Sealer == nil {
		return fields, nil
	}
	if !done {
		v.count("skipped")
		log.Warn("vouch: not sealed, the chain could not be verified in time; forwarding with Authentication-Results only")
		return fields, nil
	}
	// The seal covers exactly what follows it on the wire: our
	// Authentication-Results field, then the spooled bytes.
	sealed := io.MultiReader(strings.NewReader(res.Field), io.NewSectionReader(ra, 0, size))
	set, err := v.Sealer.Seal(sealed, ck.AuthServID, res.AARPayload, prior)
	if err != nil {
		v.count("skipped")
		log.Warn("vouch: not sealed; forwarding with Authentication-Results only", "err", err)
		return fields, nil
	}
	v.count("sealed")
	return append(set, fields...), nil
}

func (v *Voucher) count(result string) {
	if v.Metrics != nil {
		v.Metrics.ARCSeals.WithLabelValues(result).Inc()
	}
}

func (v *Voucher) log() *slog.Logger {
	if v.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return v.Logger
}
