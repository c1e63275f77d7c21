// SPDX-License-Identifier: MIT

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/dualmx/dualmx/config"
	"github.com/dualmx/dualmx/internal/secretfile"
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/migrate"
)

func newImportCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Move old mail into Microsoft 365: from the old host over IMAP, or from a PST file",
	}
	cmd.AddCommand(newImportStartCmd(g), newImportStatusCmd(g), newImportPSTCmd(g))
	return cmd
}

// maxPasswordFile bounds a password file; a password is a line.
const maxPasswordFile = 64 << 10

// readSecretFile reads a password file that only its owner can read.
func readSecretFile(path string) (string, error) {
	b, err := secretfile.Read(path, maxPasswordFile)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// askPassword prompts on the terminal without echo.
func askPassword(in io.Reader, out io.Writer, prompt string) (string, error) {
	f, ok := in.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return "", errors.New("no terminal to ask the password on; use --password-file")
	}
	fmt.Fprint(out, prompt)
	b, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(out)
	return string(b), err
}

func newImportStartCmd(g *globalFlags) *cobra.Command {
	var host, user, passFile, method, tlsFlag string
	var port int
	cmd := &cobra.Command{
		Use:   "start ADDRESS --imap-host H --imap-user U [--password-file F]",
		Short: "Move the old host's mailbox into the Microsoft 365 mailbox ADDRESS",
		Long: `Move the old host's IMAP mailbox into the Microsoft 365 mailbox ADDRESS.

--method auto (the default) looks the mailbox up in Exchange Online and says
which way it takes and why:
  microsoft  for a user mailbox: Microsoft's own IMAP migration (a migration
             endpoint for the old host and a migration batch); Microsoft copies
             the mail and keeps syncing until the batch is completed, which
             "dualmx import status" does once it is synced;
  imap-copy  for a shared mailbox (Microsoft does not document IMAP migration
             into one): dualmx copies the mail itself, over IMAP from the old
             host and through Microsoft Graph into the mailbox.
--method microsoft or --method imap-copy chooses instead.

The copy keeps each message's folder (special folders such as Sent, Drafts,
Trash, Junk and Archive, in English or Dutch, go to their Outlook
counterparts), its received time, read state and flag; a message is never
stored as a draft unless it was one. It can be stopped and rerun at any time:
nothing is copied twice. A message Microsoft refuses is skipped with its
reason and listed by "dualmx import status"; the next run tries it again.

--imap-tls says how the old host is reached: implicit (TLS from the start,
port 993, the default there), starttls (port 143, the default elsewhere) or
none (only to a loopback address for a copy; Microsoft would send the
password in the clear).

The old host's password is asked at the terminal (no echo), or read from
--password-file, which must be readable by its owner only. It is used for this
run (and, for Microsoft's migration, handed to Microsoft in the batch) and
never stored or logged.`,
		Example: `  dualmx import start scriba@hervormdputten.nl --imap-host imap.solcon.nl --imap-user scriba@hervormdputten.nl
  dualmx import start anna.devries@hervormdputten.nl --imap-host imap.solcon.nl --imap-user anna --password-file /root/anna.pw
  dualmx import start scriba@hervormdputten.nl --imap-host imap.solcon.nl --imap-user scriba --method imap-copy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if host == "" || user == "" {
				return &exitError{code: 2, err: errors.New("--imap-host and --imap-user are required")}
			}
			if method != "auto" && method != migrate.MethodMicrosoft && method != migrate.MethodCopy {
				return &exitError{code: 2, err: fmt.Errorf("--method %q: want auto, microsoft or imap-copy", method)}
			}
			if port < 1 || port > 65535 {
				return &exitError{code: 2, err: fmt.Errorf("--imap-port %d: want 1 to 65535", port)}
			}
			mode, err := migrate.ParseTLSMode(tlsFlag, port)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			m, err := openM365(g, true)
			if err != nil {
				return err
			}
			defer m.close()
			ctx := cmd.Context()
			out := cmd.OutOrStdout()
			mailbox := strings.ToLower(args[0])
			reason := "chosen with --method"
			if method == "auto" {
				mb, err := m.exchange.GetMailbox(ctx, mailbox)
				if errors.Is(err, m365.ErrNotFound) {
					return fmt.Errorf("there is no mailbox %s in Microsoft 365 yet; create it first (dualmx provision apply)", mailbox)
				}
				if err != nil {
					return err
				}
				method, reason = migrate.ChooseMethod(mailbox, mb.RecipientTypeDetails)
			}
			fmt.Fprintf(out, "method: %s (%s)\n", method, reason)
			if method == migrate.MethodCopy && mode == migrate.TLSNone && !migrate.ClearTextAllowed(host) {
				return &exitError{code: 2, err: fmt.Errorf("--imap-tls none would send the password for %s unencrypted to %s", user, host)}
			}
			var pw string
			if passFile != "" {
				pw, err = readSecretFile(passFile)
			} else {
				pw, err = askPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), "IMAP password for "+user+" at "+host+": ")
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			path := migrate.ProgressFile(m.cfg.StateDir, mailbox)
			p, err := migrate.LoadProgress(path)
			if err != nil {
				return err
			}
			if p != nil && p.Method != method {
				return fmt.Errorf("%s already has an import by %s (%s); moving the same mail a second way would store it twice. "+
					"Finish that one, or move the file away to start over", mailbox, p.Method, path)
			}
			if p == nil {
				p = &migrate.Progress{Mailbox: mailbox, Method: method}
			}
			p.Reason, p.Host, p.User = reason, host, user
			if method == migrate.MethodMicrosoft {
				return startBatch(ctx, out, m, p, path, migrate.BatchRequest{Mailbox: mailbox, Host: host, Port: port, Mode: mode, User: user, Password: pw})
			}
			src := migrate.IMAPSource{Addr: netJoin(host, port), User: user, Password: pw, Mode: mode}
			err = migrate.CopyIMAP(ctx, src, m.graph, p, path, migrate.Options{Out: out})
			writeProgress(out, p)
			return copyResult(err, mailbox)
		},
	}
	cmd.Flags().StringVar(&host, "imap-host", "", "the old host's IMAP server (required)")
	cmd.Flags().IntVar(&port, "imap-port", 993, "IMAP port")
	cmd.Flags().StringVar(&tlsFlag, "imap-tls", "", "implicit, starttls or none (default: implicit on port 993, else starttls)")
	cmd.Flags().StringVar(&user, "imap-user", "", "login name at the old host (required)")
	cmd.Flags().StringVar(&passFile, "password-file", "", "read the password from this file (mode 600) instead of asking")
	cmd.Flags().StringVar(&method, "method", "auto", "auto, microsoft (migration batch) or imap-copy (dualmx's copy through Graph)")
	return cmd
}

func startBatch(ctx context.Context, out io.Writer, m *m365Admin, p *migrate.Progress, path string, r migrate.BatchRequest) error {
	if r.Mode == migrate.TLSNone {
		fmt.Fprintf(out, "warning: Microsoft will log in to %s without encryption; the password crosses the internet in the clear\n", r.Host)
	}
	ex, err := exchangeCommander(m.cfg)
	if err != nil {
		return err
	}
	name, err := migrate.StartBatch(ctx, ex, r, time.Now())
	switch {
	case errors.Is(err, migrate.ErrBatchRunning):
		fmt.Fprintf(out, "migration batch %s for %s is already running; follow it with: dualmx import status %s\n", name, r.Mailbox, r.Mailbox)
	case errors.Is(err, migrate.ErrBatchCompleted):
		fmt.Fprintf(out, "migration batch %s for %s has completed: the old mail is in; nothing to do\n", name, r.Mailbox)
	case errors.Is(err, migrate.ErrBatchRestarted):
		fmt.Fprintf(out, "migration batch %s for %s ended with errors or was stopped; started it again (Start-MigrationBatch), "+
			"it keeps what it moved. If Microsoft's error was the old host's password, remove the batch in the Exchange admin center "+
			"and run this command again. Follow it with: dualmx import status %s\n", name, r.Mailbox, r.Mailbox)
	}
	if errors.Is(err, migrate.ErrBatchRunning) || errors.Is(err, migrate.ErrBatchCompleted) || errors.Is(err, migrate.ErrBatchRestarted) {
		p.Batch = name
		return p.Save(path)
	}
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	p.Batch, p.Started, p.Updated, p.Finished = name, now, now, time.Time{}
	if err := p.Save(path); err != nil {
		return err
	}
	fmt.Fprintf(out, "migration batch %s started for %s from %s (endpoint security %s); follow it with: dualmx import status %s\n",
		name, r.Mailbox, r.Host, migrate.Security(r.Mode), r.Mailbox)
	return nil
}

// copyResult turns a run's end into the command's: a stop is exit 1 and says
// that a rerun resumes.
func copyResult(err error, mailbox string) error {
	var nh *m365.NotHonouredError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nh):
		// Rerunning would only do the same again.
		return err
	case errors.Is(err, migrate.ErrLocked):
		return fmt.Errorf("%s: %w", mailbox, err)
	case errors.Is(err, context.Canceled):
		return fmt.Errorf("stopped; run the same command again to resume")
	}
	return fmt.Errorf("%w\nnothing is lost: run the same command again to resume", err)
}

func newImportPSTCmd(g *globalFlags) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:   "pst FILE --to ADDRESS",
		Short: "Import an Outlook PST file into the Microsoft 365 mailbox ADDRESS",
		Long: `Import an Outlook data file (PST) into the Microsoft 365 mailbox ADDRESS.

The file is unpacked with readpst (Debian's pst-utils) into a private directory
under the state directory (it needs about as much free space as the PST), and
its folders are imported the way "dualmx import start --method imap-copy"
copies: folders kept and special ones (Sent Items, Deleted Items, ...) mapped
to their Outlook counterparts, received time and read state kept, not as
drafts, resumable, nothing twice. readpst does not pass on follow-up flags.`,
		Example: "  dualmx import pst /srv/oud/scriba-2019.pst --to scriba@hervormdputten.nl",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return &exitError{code: 2, err: errors.New("--to ADDRESS is required")}
			}
			file, err := filepath.Abs(args[0])
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
				return &exitError{code: 2, err: fmt.Errorf("%s: not a readable file", args[0])}
			}
			m, err := openM365(g, true)
			if err != nil {
				return err
			}
			defer m.close()
			mailbox := strings.ToLower(to)
			path := migrate.PSTProgressFile(m.cfg.StateDir, mailbox, file)
			p, err := migrate.LoadProgress(path)
			if err != nil {
				return err
			}
			if p == nil {
				p = &migrate.Progress{Mailbox: mailbox, Method: migrate.MethodPST, File: file}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "importing %s into %s\n", visible.String(file), mailbox)
			err = migrate.ImportPST(cmd.Context(), file, m.graph, p, path, migrate.PSTOptions{Options: migrate.Options{Out: out}, WorkDir: migrate.Dir(m.cfg.StateDir)})
			writeProgress(out, p)
			return copyResult(err, mailbox)
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "the Microsoft 365 mailbox to import into (required)")
	return cmd
}

func netJoin(host string, port int) string {
	if strings.Contains(host, ":") && !strings.HasPrefix(host, "[") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

func exchangeCommander(cfg *config.Config) (*m365.InvokeCommandClient, error) {
	cred, err := m365Credential(cfg)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	ends, err := m365Endpoints(cfg)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	// The cloud's Exchange host and resource, as every other command uses.
	return m365.NewExchange(cred, m365.ExchangeOptions{BaseURL: ends.Exchange(), Scope: ends.Cloud.ExchangeScope(), TenantID: cfg.M365.TenantID})
}

func writeProgress(w io.Writer, p *migrate.Progress) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tTO\tFOUND\tMOVED\tSKIPPED")
	for _, f := range p.Folders {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", visible.String(f.Name), visible.String(dash(f.Target)), f.Found, f.Moved, len(f.Skips))
	}
	tw.Flush()
}

// importStatus is one import as "import status --json" shows it.
type importStatus struct {
	Method   string          `json:"method"`
	Reason   string          `json:"reason,omitempty"`
	Host     string          `json:"host,omitempty"`
	User     string          `json:"user,omitempty"`
	File     string          `json:"file,omitempty"`
	Started  time.Time       `json:"started"`
	Updated  time.Time       `json:"updated"`
	Finished *time.Time      `json:"finished,omitempty"`
	Running  bool            `json:"running"`
	Run      runStatus       `json:"run"`
	Totals   counts          `json:"totals"`
	Folders  []folderStatus  `json:"folders"`
	Skipped  []skippedStatus `json:"skipped"`
	Batch    *batchStatus    `json:"batch,omitempty"`
}

type runStatus struct {
	Started   time.Time `json:"started"`
	Moved     int       `json:"moved"`
	Skipped   int       `json:"skipped"`
	Bytes     int64     `json:"bytes"`
	PerMinute float64   `json:"per_minute"`
}

type counts struct {
	Found   int `json:"found"`
	Moved   int `json:"moved"`
	Skipped int `json:"skipped"`
}

type folderStatus struct {
	Name   string `json:"name"`
	Target string `json:"target"`
	counts
}

type skippedStatus struct {
	Folder  string    `json:"folder"`
	UID     uint32    `json:"uid,omitempty"`
	Subject string    `json:"subject,omitempty"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

type batchStatus struct {
	Name       string `json:"name"`
	Status     string `json:"status"`
	Found      int    `json:"found"`
	Moved      int    `json:"moved"`
	Skipped    int    `json:"skipped"`
	Failed     bool   `json:"failed"`
	Error      string `json:"error,omitempty"`
	Completing bool   `json:"completing,omitempty"`
	// CompleteAfter is when completion was asked for (Get-MigrationBatch's
	// CompleteAfterUTC, as Microsoft writes it).
	CompleteAfter string `json:"complete_after,omitempty"`
}

func statusOf(p *migrate.Progress, path string, now time.Time) importStatus {
	s := importStatus{Method: p.Method, Reason: p.Reason, Host: p.Host, User: p.User, File: p.File, Started: p.Started,
		Updated: p.Updated, Running: migrate.Running(path), Folders: []folderStatus{}, Skipped: []skippedStatus{}}
	if !p.Finished.IsZero() {
		f := p.Finished
		s.Finished = &f
	}
	until := p.Updated
	if s.Running {
		until = now
	}
	s.Run = runStatus{Started: p.Run.Started, Moved: p.Run.Moved, Skipped: p.Run.Skipped, Bytes: p.Run.Bytes, PerMinute: p.Run.PerMinute(until)}
	for _, f := range p.Folders {
		fs := folderStatus{Name: f.Name, Target: f.Target, counts: counts{Found: f.Found, Moved: f.Moved, Skipped: len(f.Skips)}}
		s.Folders = append(s.Folders, fs)
		s.Totals.Found += fs.Found
		s.Totals.Moved += fs.Moved
		s.Totals.Skipped += fs.Skipped
		for _, k := range f.Skips {
			s.Skipped = append(s.Skipped, skippedStatus{Folder: f.Name, UID: k.UID, Subject: k.Subject, Reason: k.Reason, At: k.At})
		}
	}
	return s
}

func newImportStatusCmd(g *globalFlags) *cobra.Command {
	var asJSON, noComplete bool
	cmd := &cobra.Command{
		Use:   "status ADDRESS [--json]",
		Short: "Show an import's progress: per folder found, moved and skipped, the rate, and what was skipped and why",
		Long: `Show the imports into ADDRESS: per folder how many messages were found at the
old host, how many were moved and how many skipped; the rate of the current
(or last) run; and every skipped message with Microsoft's reason.

For Microsoft's IMAP migration it asks Exchange Online for the batch's state.
A batch that is synced is completed here (Complete-MigrationBatch): until
then Microsoft keeps syncing the old mailbox, which during the forwarding
window would bring forwarded mail in a second time. --no-complete only looks.

Exit 1 when Microsoft's batch failed.`,
		Example: "  dualmx import status scriba@hervormdputten.nl\n  dualmx import status scriba@hervormdputten.nl --json",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Only files under state_dir are read, nothing is created:
			// the state database is not needed, and any reader may look.
			cfg, err := loadSettings(g)
			if err != nil {
				return err
			}
			a := &admin{cfg: cfg}
			mailbox := strings.ToLower(args[0])
			paths, err := migrate.ProgressFiles(a.cfg.StateDir, mailbox)
			if err != nil {
				return err
			}
			if len(paths) == 0 {
				return &exitError{code: 1, err: fmt.Errorf("no import started for %s; see dualmx import start --help", mailbox)}
			}
			var all []importStatus
			var failed error
			for _, path := range paths {
				p, err := migrate.LoadProgress(path)
				if err != nil {
					return err
				}
				s := statusOf(p, path, time.Now())
				if p.Method == migrate.MethodMicrosoft {
					b, err := batchState(cmd.Context(), a.cfg, mailbox, p.Batch, !noComplete)
					if err != nil {
						return err
					}
					s.Batch = b
					if b.Failed {
						failed = fmt.Errorf("migration batch %s failed: %s", b.Name, dash(b.Error))
					}
				}
				all = append(all, s)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"mailbox": mailbox, "imports": all}); err != nil {
					return err
				}
			} else {
				for _, s := range all {
					writeStatus(out, mailbox, s)
				}
			}
			if failed != nil {
				return &exitError{code: 1, err: failed}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().BoolVar(&noComplete, "no-complete", false, "do not complete a synced migration batch")
	return cmd
}

func batchState(ctx context.Context, cfg *config.Config, mailbox, name string, complete bool) (*batchStatus, error) {
	if !cfg.M365.Enabled {
		return nil, &exitError{code: 2, err: fmt.Errorf("%s has no m365: section", cfg.Path)}
	}
	ex, err := exchangeCommander(cfg)
	if err != nil {
		return nil, err
	}
	st, err := migrate.GetBatchStatus(ctx, ex, mailbox, name)
	if err != nil {
		return nil, err
	}
	b := &batchStatus{Name: st.Name, Status: st.Status, Found: st.Found, Moved: st.Moved, Skipped: st.Skipped, Failed: st.Failed, Error: st.Error,
		CompleteAfter: st.CompleteAfter}
	if complete && st.Synced() {
		if err := migrate.CompleteBatch(ctx, ex, st.Name); err != nil {
			return nil, err
		}
		b.Completing = true
	}
	return b, nil
}

func writeStatus(w io.Writer, mailbox string, s importStatus) {
	safe := visible.String
	from := s.Host
	if s.User != "" {
		from += " (user " + s.User + ")"
	}
	if s.File != "" {
		from = s.File
	}
	state := "not finished"
	switch {
	case s.Running:
		state = "running"
	case s.Finished != nil:
		state = "finished " + s.Finished.Local().Format("2006-01-02 15:04")
	}
	fmt.Fprintf(w, "%s: %s import from %s, started %s, %s\n", mailbox, s.Method, safe(from), s.Started.Local().Format("2006-01-02 15:04"), state)
	if s.Reason != "" {
		fmt.Fprintf(w, "  why %s: %s\n", s.Method, s.Reason)
	}
	if b := s.Batch; b != nil {
		fmt.Fprintf(w, "migration batch %s: %s, %d of %d items synced, %d skipped by Microsoft\n", safe(b.Name), safe(b.Status), b.Moved, b.Found, b.Skipped)
		switch {
		case b.Completing && b.CompleteAfter != "":
			fmt.Fprintf(w, "the batch is synced: completion asked for at %s (Complete-MigrationBatch); Microsoft runs a last sync and completes it in its own time\n", safe(b.CompleteAfter))
		case b.Completing:
			fmt.Fprintf(w, "the batch is synced: completion asked for now (Complete-MigrationBatch); Microsoft runs a last sync and completes it in its own time\n")
		}
		if b.Error != "" {
			fmt.Fprintf(w, "Microsoft says: %s\n", safe(b.Error))
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tTO\tFOUND\tMOVED\tSKIPPED")
	for _, f := range s.Folders {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", safe(f.Name), safe(dash(f.Target)), f.Found, f.Moved, f.Skipped)
	}
	fmt.Fprintf(tw, "(all)\t\t%d\t%d\t%d\n", s.Totals.Found, s.Totals.Moved, s.Totals.Skipped)
	tw.Flush()
	fmt.Fprintf(w, "last run: %d moved, %d skipped, %.0f messages/minute\n", s.Run.Moved, s.Run.Skipped, s.Run.PerMinute)
	if len(s.Skipped) > 0 {
		fmt.Fprintln(w, "skipped (tried again on the next run):")
		for _, k := range s.Skipped {
			id := ""
			if k.UID != 0 {
				id = " UID " + strconv.FormatUint(uint64(k.UID), 10)
			}
			fmt.Fprintf(w, "  %s%s %q: %s\n", safe(k.Folder), id, safe(k.Subject), safe(k.Reason))
		}
	}
}
