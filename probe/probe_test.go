// SPDX-License-Identifier: MIT

package probe

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dualmx/dualmx/metrics"
	"github.com/dualmx/dualmx/router"
)

var t0 = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

func testKey(t *testing.T) []byte {
	t.Helper()
	k, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "state", KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), KeyFile)
	k1, err := LoadOrCreateKey(path)
	if err != nil || len(k1) != 32 {
		t.Fatalf("create: %v %d", err, len(k1))
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrCreateKey(path)
	if err != nil || string(k1) != string(k2) {
		t.Fatalf("reload gave another key: %v", err)
	}
	os.Chmod(path, 0o640)
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "group or others") {
		t.Errorf("a key the group can read: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("zz\n"), 0o600)
	if _, err := LoadOrCreateKey(path); err == nil || !strings.Contains(err.Error(), "not a hex key") {
		t.Error("a corrupt key file was accepted")
	}
}

// TestVerify: only a marker made with the key, unchanged, and fresh verifies.
func TestVerify(t *testing.T) {
	key := testKey(t)
	m, err := New(key, "Scriba@Example.nl", t0)
	if err != nil {
		t.Fatal(err)
	}
	good := m.Value()
	other := testKey(t)
	tampered := strings.Replace(good, "a=scriba@example.nl", "a=koster@example.nl", 1)
	tests := []struct {
		name, value string
		key         []byte
		at          time.Time
		want        error
	}{
		{"good", good, key, t0.Add(time.Minute), nil},
		{"good, folded and reordered", strings.ReplaceAll(good, "; ", ";\r\n\t"), key, t0, nil},
		{"other key", good, other, t0, ErrBadMAC},
		{"address changed", tampered, key, t0, ErrBadMAC},
		{"time changed", strings.Replace(good, "t=", "t=1", 1), key, t0, ErrBadMAC},
		{"too old", good, key, t0.Add(MaxAge + time.Second), ErrStale},
		{"from the future", good, key, t0.Add(-time.Hour), ErrStale},
		{"garbage", "hello", key, t0, ErrMalformed},
		{"no mac", strings.Split(good, "; m=")[0], key, t0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Verify(tt.key, tt.value, tt.at)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if err == nil && (got.Address != "scriba@example.nl" || got.Nonce != m.Nonce || !got.Sent.Equal(t0)) {
				t.Errorf("marker = %+v", got)
			}
		})
	}
	msg := string(Message(m, "postmaster@example.nl", "relay.example.nl"))
	if !strings.Contains(msg, "\r\n"+Field+": "+good+"\r\n") || !strings.Contains(msg, "To: <scriba@example.nl>") {
		t.Errorf("message lacks the marker:\n%s", msg)
	}
}

func openStore(t *testing.T) *router.Store {
	t.Helper()
	s, err := router.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	for _, n := range []string{"scriba", "koster"} {
		if _, err := s.Add(ctx, n+"@example.nl", n+"@fwd.example.nl", "", "test"); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// TestRecorder: the relay records verified only for a marker naming the
// address whose alias received it; the same probe twice is one record; a
// probe through another address's alias or straight to the public address
// is audited as misrouted; a forged marker records nothing.
func TestRecorder(t *testing.T) {
	ctx := context.Background()
	key := testKey(t)
	st := openStore(t)
	m := metrics.New()
	r := &Recorder{Key: key, Ledger: st, Metrics: m, Now: func() time.Time { return t0.Add(2 * time.Minute) }}
	scriba, _ := New(key, "scriba@example.nl", t0)
	forged, _ := New(testKey(t), "scriba@example.nl", t0)
	viaKoster, _ := New(key, "scriba@example.nl", t0)
	direct, _ := New(key, "scriba@example.nl", t0)

	steps := []struct {
		name  string
		mk    Marker
		rcpts []Recipient
		want  Result
	}{
		{"verified", scriba, []Recipient{{"scriba@fwd.example.nl", "scriba@example.nl"}}, Verified},
		{"again", scriba, []Recipient{{"scriba@fwd.example.nl", "scriba@example.nl"}}, Verified},
		{"forged", forged, []Recipient{{"scriba@fwd.example.nl", "scriba@example.nl"}}, Invalid},
		{"wrong alias", viaKoster, []Recipient{{"koster@fwd.example.nl", "koster@example.nl"}}, Misrouted},
		{"not through the forward", direct, []Recipient{{"scriba@example.nl", "scriba@example.nl"}}, Misrouted},
	}
	for _, s := range steps {
		got, err := r.Arrived(ctx, "Q1", s.mk.Value(), "192.0.2.1", s.rcpts)
		if err != nil || got != s.want {
			t.Fatalf("%s: %s %v, want %s", s.name, got, err, s.want)
		}
	}
	ev, _ := st.Evidence(ctx, "scriba@example.nl")
	if len(ev) != 1 || ev[0].Kind != router.ForwardVerified || ev[0].Ref != scriba.Nonce || ev[0].Actor != "relay" ||
		!strings.Contains(ev[0].Detail, "scriba@fwd.example.nl") {
		t.Fatalf("evidence = %+v", ev)
	}
	au, _ := st.Audit(ctx, "scriba@example.nl")
	var mis []string
	for _, e := range au {
		if e.Action == ActionMisrouted {
			mis = append(mis, e.Detail)
		}
	}
	if len(mis) != 2 || !strings.Contains(mis[0], "the alias of koster@example.nl") || !strings.Contains(mis[1], "did not come through the forward") {
		t.Errorf("misrouted audit = %q", mis)
	}
	for res, n := range map[string]float64{"verified": 1, "invalid": 1, "misrouted": 2} {
		if got := testutil.ToFloat64(m.ProbeArrivals.WithLabelValues(res)); got != n {
			t.Errorf("dualmx_probe_arrivals_total{result=%q} = %v, want %v", res, got, n)
		}
	}
	if ko, _ := st.Evidence(ctx, "koster@example.nl"); len(ko) != 0 {
		t.Errorf("koster got evidence from scriba's probe: %+v", ko)
	}
}

func TestWait(t *testing.T) {
	key := testKey(t)
	st := openStore(t)
	r := &Recorder{Key: key, Ledger: st, Now: func() time.Time { return t0 }}

	ok, _ := New(key, "scriba@example.nl", t0)
	go func() {
		time.Sleep(50 * time.Millisecond)
		r.Arrived(context.Background(), "Q1", ok.Value(), "127.0.0.1", []Recipient{{"scriba@fwd.example.nl", "scriba@example.nl"}})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if e, err := Wait(ctx, st, ok, 10*time.Millisecond); err != nil || e.Ref != ok.Nonce {
		t.Fatalf("Wait = %+v %v", e, err)
	}

	mis, _ := New(key, "scriba@example.nl", t0)
	r.Arrived(context.Background(), "Q2", mis.Value(), "127.0.0.1", []Recipient{{"koster@fwd.example.nl", "koster@example.nl"}})
	if _, err := Wait(ctx, st, mis, 10*time.Millisecond); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "alias of koster@example.nl") {
		t.Fatalf("misrouted Wait = %v", err)
	}

	lost, _ := New(key, "scriba@example.nl", t0)
	short, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	_, err := Wait(short, st, lost, 10*time.Millisecond)
	for _, want := range []string{"did not arrive", "is planned", "forward not set", "scriba@fwd.example.nl", "wrong alias", "relay not reachable"} {
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), want) {
			t.Errorf("timeout advice %q lacks %q", err, want)
		}
	}
}
