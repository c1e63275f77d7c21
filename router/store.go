// SPDX-License-Identifier: MIT

package router

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
)

// Errors callers branch on; they are wrapped with context, so use errors.Is.
var (
	ErrNotFound = errors.New("address not found")
	ErrExists   = errors.New("address or alias already exists")
)

// Address is one migrating address as stored.
type Address struct {
	Address string // public address, e.g. scriba@hervormdputten.nl
	Alias   string // what the old host forwards to, e.g. scriba@fwd.hervormdputten.nl
	Target  string // where the relay delivers at Microsoft 365
	State   State
	// CreatedAt and UpdatedAt track admin changes only; deliveries do not touch UpdatedAt.
	CreatedAt, UpdatedAt time.Time
	// LastDelivery is the zero time until the target first accepted mail for the address.
	LastDelivery time.Time
	// Delivered counts the recipients the target accepted for the address.
	Delivered int64
}

// AuditEntry is one row of the audit log.
type AuditEntry struct {
	ID      int64     `json:"id"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"` // OS user who ran the command
	Address string    `json:"address"`
	Action  string    `json:"action"`         // add, flip, drop, bounce, release, ...
	From    State     `json:"from,omitempty"` // empty for actions that are not transitions
	To      State     `json:"to,omitempty"`
	Forced  bool      `json:"forced,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// Audit actions written by this package; the queue's CLI commands add their own.
const (
	ActionAdd  = "add"
	ActionFlip = "flip"
)

// FlipRequest asks to move an address (public address or alias) to another state.
type FlipRequest struct {
	Address string
	To      State
	Reason  string
	Actor   string // "" means the current OS user
	Force   bool
	// Missing lists checklist steps whose evidence lives outside this
	// database (Microsoft 365: account, shared mailbox, holder access) and
	// that the caller found unproven. Flip to migrated refuses them, as it
	// refuses missing evidence it can see itself, unless forced.
	Missing []MissingEvidence
}

// PendingChecker reports how much mail the spool still holds for a public
// address. The queue implements it.
// Flip calls it inside its write transaction, so the answer and the state
// change cannot drift apart; it should be quick (a spool index or directory scan).
type PendingChecker interface {
	Pending(address string) (queued, held int, err error)
}

// Store is the state database. It is safe for concurrent use, and several
// processes (the daemon and any number of CLI invocations) may open the same
// file at once.
type Store struct {
	db       *sql.DB
	now      func() time.Time
	readOnly bool // OpenReadOnly: write refuses
}

// Option configures Open.
type Option func(*Store, *openConfig)

type openConfig struct{ busyTimeout time.Duration }

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option {
	return func(s *Store, _ *openConfig) { s.now = now }
}

// WithBusyTimeout bounds how long a statement waits for another process's
// lock before failing (default 5s).
func WithBusyTimeout(d time.Duration) Option {
	return func(_ *Store, c *openConfig) { c.busyTimeout = d }
}

// timeLayout is fixed-width so that stored times sort as text and stay
// readable in the sqlite3 shell.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// Open opens or creates the state database at path and brings its schema up
// to date.
func Open(path string, opts ...Option) (*Store, error) {
	// The driver splits its options off at the first '?', and would read a
	// leading "file:" as a URI.
	if path == "" || strings.Contains(path, "?") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("state database %q: the path must be a plain file name without '?'", path)
	}
	s := &Store{now: time.Now}
	cfg := openConfig{busyTimeout: 5 * time.Second}
	for _, o := range opts {
		o(s, &cfg)
	}
	// busy_timeout comes first so that switching to WAL, which needs a lock,
	// already waits for a concurrent opener. _txlock=immediate makes every
	// read-write transaction take the write lock at BEGIN: a deferred one that
	// upgrades later fails at once with SQLITE_BUSY when another process
	// wrote in between, and busy_timeout cannot help it.
	dsn := path + "?_pragma=busy_timeout(" + strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_txlock=immediate"
	base, err := sqlite.NewConnector(dsn)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	db := sql.OpenDB(persistWAL{base})
	s.db = db
	ctx, cancel := context.WithTimeout(context.Background(), cfg.busyTimeout+5*time.Second)
	defer cancel()
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	return s, nil
}

// persistWAL keeps the -wal and -shm files when the last connection closes.
// A read-only open (OpenReadOnly) of a WAL database needs them, and a user
// who may read the state but not write its directory cannot create them:
// without this, the admin commands that only read would fail whenever the
// daemon is stopped.
type persistWAL struct{ driver.Connector }

func (c persistWAL) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	if fc, ok := conn.(sqlite.FileControl); ok {
		if _, err := fc.FileControlPersistWAL("main", 1); err != nil {
			conn.Close()
			return nil, fmt.Errorf("persistent WAL: %w", err)
		}
	}
	return conn, nil
}

// ErrNoState is wrapped when OpenReadOnly finds no state database.
var ErrNoState = errors.New("no state database yet (the daemon creates it at its first start)")

// ErrReadOnly is returned by a change asked of a store opened read-only.
var ErrReadOnly = errors.New("the state database is open read-only")

// OpenReadOnly opens an existing state database only to read it. It creates
// and changes nothing, not even the schema, so it needs read access only: to
// the database, its -wal and -shm files and their directory. A database
// whose schema is older than this dualmx's is refused; the daemon's next
// start (or any command that changes the state) upgrades it.
func OpenReadOnly(path string, opts ...Option) (*Store, error) {
	if path == "" || strings.Contains(path, "?") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("state database %q: the path must be a plain file name without '?'", path)
	}
	s := &Store{now: time.Now, readOnly: true}
	cfg := openConfig{busyTimeout: 5 * time.Second}
	for _, o := range opts {
		o(s, &cfg)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	if _, err := os.Stat(abs); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", path, ErrNoState)
		}
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	// SQLite opens the -shm file with O_CREAT even for a read-only
	// connection, so one run by root would leave a -shm the service user
	// cannot write. Where it is missing, so is the -wal after a clean close
	// (Open keeps both, but a database from an older dualmx may lack them):
	// then every commit is in the main file, and immutable=1 reads it
	// without the WAL machinery. With a -wal but no -shm there is no safe
	// way to read without creating one.
	_, walErr := os.Stat(abs + "-wal")
	_, shmErr := os.Stat(abs + "-shm")
	params := "mode=ro"
	switch {
	case shmErr == nil:
	case errors.Is(shmErr, fs.ErrNotExist) && errors.Is(walErr, fs.ErrNotExist):
		params += "&immutable=1"
	case errors.Is(shmErr, fs.ErrNotExist):
		return nil, fmt.Errorf("state database %s: its -wal file exists but not its -shm file; a command that changes the state, run as the service user, repairs that", path)
	default:
		return nil, fmt.Errorf("state database %s: %w", path, shmErr)
	}
	u := url.URL{Scheme: "file", Path: abs, OmitHost: true}
	dsn := u.String() + "?" + params + "&_pragma=busy_timeout(" + strconv.FormatInt(cfg.busyTimeout.Milliseconds(), 10) + ")" +
		"&_pragma=query_only(1)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", path, err)
	}
	s.db = db
	ctx, cancel := context.WithTimeout(context.Background(), cfg.busyTimeout+5*time.Second)
	defer cancel()
	var v int
	switch err := db.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v); {
	case err != nil:
		db.Close()
		return nil, fmt.Errorf("state database %s: schema version: %w", path, err)
	case v < len(migrations):
		db.Close()
		return nil, fmt.Errorf("state database %s: schema version %d is older than this dualmx's (%d); the daemon's next start, or a command that changes the state, upgrades it", path, v, len(migrations))
	case v > len(migrations):
		db.Close()
		return nil, fmt.Errorf("state database %s: schema version %d is newer than this dualmx understands (%d); upgrade dualmx", path, v, len(migrations))
	}
	return s, nil
}

// Empty is a read-only store with nothing in it: the state before the
// daemon's first start, for a command that only shows and has something to
// show without it (the tenant's side: provision plan, access report). It
// lives in memory and creates no file.
func Empty() (*Store, error) {
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		return nil, fmt.Errorf("empty state: %w", err)
	}
	// Every connection to :memory: is a database of its own: keep one.
	db.SetMaxOpenConns(1)
	s := &Store{now: time.Now, db: db}
	if err := s.migrate(context.Background()); err != nil {
		db.Close()
		return nil, fmt.Errorf("empty state: %w", err)
	}
	s.readOnly = true
	return s, nil
}

// Close releases the database.
func (s *Store) Close() error { return s.db.Close() }

// migrations[i] brings the schema from version i to i+1. Append only.
var migrations = []string{
	`CREATE TABLE addresses (
		address          TEXT PRIMARY KEY,
		alias            TEXT NOT NULL UNIQUE,
		target           TEXT NOT NULL,
		state            TEXT NOT NULL CHECK (state IN ('planned','provisioned','forwarding','confirmed','migrated')),
		created_at       TEXT NOT NULL,
		updated_at       TEXT NOT NULL,
		last_delivery_at TEXT,
		delivered_count  INTEGER NOT NULL DEFAULT 0,
		received_count   INTEGER NOT NULL DEFAULT 0,
		CHECK (alias <> address)
	) STRICT;
	CREATE TABLE audit (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		at         TEXT NOT NULL,
		actor      TEXT NOT NULL,
		address    TEXT NOT NULL,
		action     TEXT NOT NULL,
		from_state TEXT NOT NULL DEFAULT '',
		to_state   TEXT NOT NULL DEFAULT '',
		forced     INTEGER NOT NULL DEFAULT 0,
		reason     TEXT NOT NULL DEFAULT '',
		detail     TEXT NOT NULL DEFAULT ''
	) STRICT;
	CREATE INDEX audit_by_address ON audit (address, id);
	-- The daemon polls this one row instead of re-reading the table. Triggers
	-- bump it, so any writer, even a hand edit in the sqlite3 shell, is seen.
	CREATE TABLE generation (
		id    INTEGER PRIMARY KEY CHECK (id = 1),
		value INTEGER NOT NULL
	) STRICT;
	INSERT INTO generation (id, value) VALUES (1, 0);
	CREATE TRIGGER addresses_ins AFTER INSERT ON addresses
		BEGIN UPDATE generation SET value = value + 1 WHERE id = 1; END;
	CREATE TRIGGER addresses_upd AFTER UPDATE OF address, alias, target, state ON addresses
		BEGIN UPDATE generation SET value = value + 1 WHERE id = 1; END;
	CREATE TRIGGER addresses_del AFTER DELETE ON addresses
		BEGIN UPDATE generation SET value = value + 1 WHERE id = 1; END;`,
	// Version 2: evidence for the migration checklist (see evidence.go).
	// Databases of version 1 gain an empty table; nothing else changes.
	`CREATE TABLE evidence (
		id      INTEGER PRIMARY KEY AUTOINCREMENT,
		address TEXT NOT NULL,
		kind    TEXT NOT NULL,
		at      TEXT NOT NULL,
		actor   TEXT NOT NULL,
		ref     TEXT NOT NULL DEFAULT '',
		detail  TEXT NOT NULL DEFAULT ''
	) STRICT;
	CREATE INDEX evidence_by_address ON evidence (address, kind, id);
	CREATE UNIQUE INDEX evidence_once ON evidence (kind, ref) WHERE ref <> '';`,
	// Version 3: received_count goes. Nothing ever counted into it (smtpd's
	// counts are Prometheus metrics), so a column that always said 0 was a
	// trap for the next reader. SQLite rewrites the table; every other
	// column keeps its values.
	`ALTER TABLE addresses DROP COLUMN received_count;`,
}

func (s *Store) migrate(ctx context.Context) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT`); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
		var v int
		err := tx.QueryRowContext(ctx, `SELECT version FROM schema_version`).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_version (version) VALUES (0)`); err != nil {
				return fmt.Errorf("schema_version: %w", err)
			}
		case err != nil:
			return fmt.Errorf("schema_version: %w", err)
		}
		if v > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this dualmx understands (%d); upgrade dualmx", v, len(migrations))
		}
		for ; v < len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE schema_version SET version = ?`, v); err != nil {
			return fmt.Errorf("schema_version: %w", err)
		}
		return nil
	})
}

// write runs fn in one IMMEDIATE transaction: all of it or nothing.
func (s *Store) write(ctx context.Context, fn func(*sql.Tx) error) error {
	if s.readOnly {
		return ErrReadOnly
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// read runs fn in one deferred transaction, so it sees a single snapshot.
func (s *Store) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // read-only: nothing to lose
	return fn(tx)
}

func (s *Store) stamp(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(v sql.NullString) (time.Time, error) {
	if !v.Valid || v.String == "" {
		return time.Time{}, nil
	}
	return time.Parse(timeLayout, v.String)
}

func actorOr(a string) string {
	if a = strings.TrimSpace(a); a != "" {
		return a
	}
	return CurrentActor()
}

// Add registers a new address in state planned. alias is where the old host
// will forward to; target defaults to the public address.
func (s *Store) Add(ctx context.Context, address, alias, target, actor string) (Address, error) {
	addr, err := NormalizeAddress(address)
	if err != nil {
		return Address{}, err
	}
	al, err := NormalizeAddress(alias)
	if err != nil {
		return Address{}, fmt.Errorf("add %s: alias: %w", addr, err)
	}
	tg := addr
	if strings.TrimSpace(target) != "" {
		if tg, err = NormalizeAddress(target); err != nil {
			return Address{}, fmt.Errorf("add %s: target: %w", addr, err)
		}
	}
	if al == addr {
		return Address{}, fmt.Errorf("add %s: %w: the alias must differ from the address", addr, ErrInvalid)
	}
	if tg == al {
		return Address{}, fmt.Errorf("add %s: %w: the target must not be the alias (mail would loop through the relay)", addr, ErrInvalid)
	}
	now := s.now().UTC()
	a := Address{Address: addr, Alias: al, Target: tg, State: Planned, CreatedAt: now, UpdatedAt: now}
	err = s.write(ctx, func(tx *sql.Tx) error {
		// The UNIQUE constraints only see their own column; an alias that is
		// someone's public address (or the reverse) would make Lookup ambiguous.
		var rowAddr, rowAlias string
		err := tx.QueryRowContext(ctx, `
			SELECT address, alias FROM addresses
			WHERE address IN (?1, ?2) OR alias IN (?1, ?2) LIMIT 1`, addr, al).Scan(&rowAddr, &rowAlias)
		switch {
		case err == nil:
			return fmt.Errorf("%w: %s", ErrExists, conflict(addr, al, rowAddr, rowAlias))
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		var who string
		err = tx.QueryRowContext(ctx, `SELECT address FROM addresses WHERE alias = ?1 OR target = ?2 LIMIT 1`, tg, al).Scan(&who)
		switch {
		case err == nil:
			return fmt.Errorf("%w: target %s or alias %s would make %s deliver back into the relay", ErrInvalid, tg, al, who)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO addresses (address, alias, target, state, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?)`, addr, al, tg, string(Planned), s.stamp(now), s.stamp(now)); err != nil {
			return err
		}
		_, err = insertAudit(ctx, tx, s.stamp(now), AuditEntry{
			Actor: actorOr(actor), Address: addr, Action: ActionAdd, To: Planned,
			Detail: "alias " + al + ", target " + tg,
		})
		return err
	})
	if err != nil {
		return Address{}, fmt.Errorf("%s: %w", addr, err)
	}
	return a, nil
}

// conflict says which of the new pair clashes with which field of an existing row.
func conflict(addr, alias, rowAddr, rowAlias string) string {
	for _, c := range []struct{ what, v string }{{"address", addr}, {"alias", alias}} {
		switch c.v {
		case rowAddr:
			return fmt.Sprintf("%s %s is already the address of %s", c.what, c.v, rowAddr)
		case rowAlias:
			return fmt.Sprintf("%s %s is already the alias of %s", c.what, c.v, rowAddr)
		}
	}
	return "clashes with " + rowAddr
}

const addressColumns = `address, alias, target, state, created_at, updated_at, last_delivery_at, delivered_count`

type scanner interface{ Scan(...any) error }

func scanAddress(r scanner) (Address, error) {
	var a Address
	var st string
	var created, updated, last sql.NullString
	if err := r.Scan(&a.Address, &a.Alias, &a.Target, &st, &created, &updated, &last, &a.Delivered); err != nil {
		return Address{}, err
	}
	a.State = State(st)
	var err error
	if a.CreatedAt, err = parseTime(created); err != nil {
		return Address{}, fmt.Errorf("created_at of %s: %w", a.Address, err)
	}
	if a.UpdatedAt, err = parseTime(updated); err != nil {
		return Address{}, fmt.Errorf("updated_at of %s: %w", a.Address, err)
	}
	if a.LastDelivery, err = parseTime(last); err != nil {
		return Address{}, fmt.Errorf("last_delivery_at of %s: %w", a.Address, err)
	}
	return a, nil
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func getAddress(ctx context.Context, q querier, key string) (Address, error) {
	a, err := scanAddress(q.QueryRowContext(ctx,
		`SELECT `+addressColumns+` FROM addresses WHERE address = ?1 OR alias = ?1`, key))
	if errors.Is(err, sql.ErrNoRows) {
		return Address{}, ErrNotFound
	}
	return a, err
}

// Get finds an address by its public address or its alias.
func (s *Store) Get(ctx context.Context, addressOrAlias string) (Address, error) {
	key, err := NormalizeAddress(addressOrAlias)
	if err != nil {
		return Address{}, err
	}
	a, err := getAddress(ctx, s.db, key)
	if err != nil {
		return Address{}, fmt.Errorf("%s: %w", key, err)
	}
	return a, nil
}

// List returns every address, ordered by public address.
func (s *Store) List(ctx context.Context) ([]Address, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+addressColumns+` FROM addresses ORDER BY address`)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	defer rows.Close()
	var out []Address
	for rows.Next() {
		a, err := scanAddress(rows)
		if err != nil {
			return nil, fmt.Errorf("list addresses: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	return out, nil
}

// Flip moves an address to req.To, checking the transition rules, and writes
// the audit entry in the same transaction. A refusal is a *TransitionError.
// pending is asked about the public address only when the target state is
// migrated; it may be nil otherwise.
func (s *Store) Flip(ctx context.Context, req FlipRequest, pending PendingChecker) (AuditEntry, error) {
	key, err := NormalizeAddress(req.Address)
	if err != nil {
		return AuditEntry{}, err
	}
	var entry AuditEntry
	err = s.write(ctx, func(tx *sql.Tx) error {
		a, err := getAddress(ctx, tx, key)
		if err != nil {
			return err
		}
		entry, err = s.flip(ctx, tx, a, req, pending)
		return err
	})
	var te *TransitionError
	switch {
	case errors.As(err, &te):
		return AuditEntry{}, err // it names the address
	case err != nil:
		return AuditEntry{}, fmt.Errorf("%s: %w", key, err)
	}
	return entry, nil
}

// flip is Flip inside tx, for a read in the same transaction.
func (s *Store) flip(ctx context.Context, tx *sql.Tx, a Address, req FlipRequest, pending PendingChecker) (AuditEntry, error) {
	req.Reason = strings.TrimSpace(req.Reason)
	if err := checkStep(a.Address, a.State, req); err != nil {
		return AuditEntry{}, err
	}
	var forcedPast []string
	if skipped := req.To.index() - a.State.index() - 1; skipped > 0 {
		forcedPast = append(forcedPast, "skipped "+strings.Join(stepNames(a.State.index()+1, req.To.index()), ", "))
	}
	if req.To == Migrated {
		missing, refusal := migratedProblems(a, pending)
		em, er, err := evidenceProblems(ctx, tx, a, req.Missing)
		if err != nil {
			return AuditEntry{}, err
		}
		if refusal == "" {
			refusal = er
		}
		missing = append(missing, em...)
		if len(missing) > 0 && !req.Force {
			return AuditEntry{}, &TransitionError{Address: a.Address, From: a.State, To: req.To, Refusal: refusal,
				Why: "evidence is missing", Missing: missing}
		}
		for _, m := range missing {
			forcedPast = append(forcedPast, m.Problem)
		}
	}
	now := s.now().UTC()
	if _, err := tx.ExecContext(ctx, `UPDATE addresses SET state = ?, updated_at = ? WHERE address = ?`,
		string(req.To), s.stamp(now), a.Address); err != nil {
		return AuditEntry{}, err
	}
	entry := AuditEntry{At: now, Actor: actorOr(req.Actor), Address: a.Address, Action: ActionFlip,
		From: a.State, To: req.To, Forced: req.Force, Reason: req.Reason}
	if req.Force {
		entry.Detail = "forced"
		if len(forcedPast) > 0 {
			entry.Detail += ": " + strings.Join(forcedPast, "; ")
		}
	}
	var err error
	entry.ID, err = insertAudit(ctx, tx, s.stamp(now), entry)
	return entry, err
}

// migratedProblems lists what the spool and the delivery record say against
// migrated, each with the command that shows or proves it, and the refusal
// for the first of them.
func migratedProblems(a Address, pending PendingChecker) (missing []MissingEvidence, first Refusal) {
	add := func(r Refusal, problem, fix string) {
		if first == "" {
			first = r
		}
		missing = append(missing, MissingEvidence{Problem: problem, Fix: fix})
	}
	if pending == nil {
		add(RefusedPendingUnknown, "the spool could not be checked (no spool available)", "")
	} else if queued, held, err := pending.Pending(a.Address); err != nil {
		add(RefusedPendingUnknown, fmt.Sprintf("the spool could not be checked (%v)", err), "")
	} else if queued > 0 || held > 0 {
		add(RefusedPendingMail, fmt.Sprintf("%d queued and %d held message(s) in the spool (wait, or release or drop them)", queued, held),
			"dualmx queue list")
	}
	if a.LastDelivery.IsZero() {
		add(RefusedNoDelivery, "no delivery through the relay yet", probeCommand(a.Address))
	}
	return missing, first
}

func probeCommand(address string) string { return "dualmx address probe " + address + " --wait 5m" }

func insertAudit(ctx context.Context, tx *sql.Tx, at string, e AuditEntry) (int64, error) {
	res, err := tx.ExecContext(ctx, `
		INSERT INTO audit (at, actor, address, action, from_state, to_state, forced, reason, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		at, e.Actor, e.Address, e.Action, string(e.From), string(e.To), e.Forced, e.Reason, e.Detail)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	return res.LastInsertId()
}

// AppendAudit records an admin action that is not a state change, such as
// dropping, bouncing or releasing a queued message. At defaults to now and
// Actor to the current OS user. The address is stored normalised when it is
// a valid address and verbatim (trimmed) otherwise, so odd recipients can
// still be audited.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) error {
	e.Action = strings.TrimSpace(e.Action)
	if e.Action == "" {
		return fmt.Errorf("audit: %w: empty action", ErrInvalid)
	}
	if n, err := NormalizeAddress(e.Address); err == nil {
		e.Address = n
	} else {
		e.Address = strings.TrimSpace(e.Address)
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	e.Actor = actorOr(e.Actor)
	if err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := insertAudit(ctx, tx, s.stamp(e.At), e)
		return err
	}); err != nil {
		return fmt.Errorf("audit %s %s: %w", e.Action, e.Address, err)
	}
	return nil
}

// Audit returns the audit log, oldest first: all of it for "", otherwise the
// entries of one address (given as public address or alias).
func (s *Store) Audit(ctx context.Context, address string) ([]AuditEntry, error) {
	q := `SELECT id, at, actor, address, action, from_state, to_state, forced, reason, detail FROM audit`
	var args []any
	if strings.TrimSpace(address) != "" {
		key, err := NormalizeAddress(address)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		q += ` WHERE address = ?1 OR address = (SELECT address FROM addresses WHERE alias = ?1)`
		args = append(args, key)
	}
	rows, err := s.db.QueryContext(ctx, q+` ORDER BY id`, args...)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var e AuditEntry
		var at, from, to string
		if err := rows.Scan(&e.ID, &at, &e.Actor, &e.Address, &e.Action, &from, &to, &e.Forced, &e.Reason, &e.Detail); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		if e.At, err = time.Parse(timeLayout, at); err != nil {
			return nil, fmt.Errorf("audit entry %d: %w", e.ID, err)
		}
		e.From, e.To = State(from), State(to)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return out, nil
}

// RecordDelivery notes that the target accepted n recipients for address
// (public address or alias) at time at. It is what unlocks migrated.
func (s *Store) RecordDelivery(address string, at time.Time, n int) error {
	if n <= 0 {
		return nil
	}
	key, err := NormalizeAddress(address)
	if err != nil {
		return fmt.Errorf("record delivery: %w", err)
	}
	ts := s.stamp(at)
	err = s.write(context.Background(), func(tx *sql.Tx) error {
		res, err := tx.Exec(`
			UPDATE addresses SET delivered_count = delivered_count + ?1,
				last_delivery_at = CASE WHEN last_delivery_at IS NULL OR last_delivery_at < ?2 THEN ?2 ELSE last_delivery_at END
			WHERE address = ?3 OR alias = ?3`, n, ts, key)
		return mustAffect(res, err)
	})
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", key, err)
	}
	return nil
}

func mustAffect(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Route is what the relay needs to know about a recipient.
type Route struct {
	Address, Alias, Target string
	State                  State
}

func (s *Store) generation(ctx context.Context) (int64, error) {
	var g int64
	err := s.db.QueryRowContext(ctx, `SELECT value FROM generation WHERE id = 1`).Scan(&g)
	return g, err
}

// routes reads the generation and every route from one snapshot, so the
// table never pairs a generation with rows from another.
func (s *Store) routes(ctx context.Context) (int64, []Route, error) {
	var gen int64
	var out []Route
	err := s.read(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, `SELECT value FROM generation WHERE id = 1`).Scan(&gen); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT address, alias, target, state FROM addresses ORDER BY address`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var r Route
			var st string
			if err := rows.Scan(&r.Address, &r.Alias, &r.Target, &st); err != nil {
				return err
			}
			r.State = State(st)
			out = append(out, r)
		}
		return rows.Err()
	})
	return gen, out, err
}
