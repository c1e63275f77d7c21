package main

import (
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
	"github.com/dualmx/dualmx/internal/visible"
	"github.com/dualmx/dualmx/m365"
	"github.com/dualmx/dualmx/migrate"
)

func newImportCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Move an old mailbox's mail into the shared mailbox (IMAP)",
	}
	cmd.AddCommand(newImportStartCmd(g), newImportStatusCmd(g))
	return cmd
}

func progressPath(cfg *config.Config, address string) string {
	return filepath.Join(cfg.StateDir, "import", strings.ToLower(address)+".json")
}

// readSecretFile reads a password file that only its owner can read.
func readSecretFile(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is readable by others (mode %v); chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
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
	var host, user, passFile, method string
	var port int
	var plain bool
	cmd := &cobra.Command{
		Use:   "start ADDRESS --imap-host H --imap-user U [--password-file F]",
		Short: "Start moving the old mailbox of ADDRESS into its shared mailbox",
		Long: `Start moving the old host's mailbox into the shared mailbox ADDRESS.

--method microsoft (the default) creates an IMAP migration endpoint for the
old host and a migration batch for the mailbox through the Exchange Online
admin API: Microsoft copies the mail and keeps syncing until the batch is
completed. --method imap-copy copies it directly: IMAP from the old host,
Microsoft Graph into the mailbox, folder structure kept, de-duplicated by
Message-ID; it can be re-run at any time and copies nothing twice.

The old host's password is asked at the terminal (no echo), or read from
--password-file, which must be readable by its owner only. It is used for this
run and never stored or logged. Follow progress with "dualmx import status".`,
		Example: `  dualmx import start scriba@hervormdputten.nl --imap-host imap.solcon.nl --imap-user scriba@hervormdputten.nl
  dualmx import start scriba@hervormdputten.nl --imap-host imap.solcon.nl --imap-user scriba --method imap-copy --password-file /root/scriba.pw`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if host == "" || user == "" {
				return &exitError{code: 2, err: errors.New("--imap-host and --imap-user are required")}
			}
			if method != "microsoft" && method != "imap-copy" {
				return &exitError{code: 2, err: fmt.Errorf("--method %q: want microsoft or imap-copy", method)}
			}
			var pw string
			var err error
			if passFile != "" {
				pw, err = readSecretFile(passFile)
			} else {
				pw, err = askPassword(cmd.InOrStdin(), cmd.ErrOrStderr(), "IMAP password for "+user+" at "+host+": ")
			}
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			m, err := openM365(g)
			if err != nil {
				return err
			}
			defer m.close()
			ctx := cmd.Context()
			mailbox := strings.ToLower(args[0])
			path := progressPath(m.cfg, mailbox)
			p, err := migrate.LoadProgress(path)
			if err != nil {
				return err
			}
			if p == nil {
				p = &migrate.Progress{Mailbox: mailbox, Method: method, Host: host, User: user, Started: time.Now().UTC()}
			}
			p.Method = method
			out := cmd.OutOrStdout()
			if method == "microsoft" {
				ex, err := exchangeCommander(m.cfg)
				if err != nil {
					return err
				}
				name, err := migrate.StartBatch(ctx, ex, migrate.BatchRequest{Mailbox: mailbox, Host: host, Port: port, User: user, Password: pw})
				if err != nil {
					return err
				}
				p.Batch, p.Updated = name, time.Now().UTC()
				if err := p.Save(path); err != nil {
					return err
				}
				fmt.Fprintf(out, "migration batch %s started for %s from %s; follow it with: dualmx import status %s\n", visible.String(name), visible.String(mailbox), visible.String(host), visible.String(mailbox))
				return nil
			}
			src := migrate.Source{Addr: netJoin(host, port), User: user, Password: pw, Plain: plain}
			err = migrate.Copy(ctx, src, m.graph, mailbox, p, path)
			writeProgress(out, p)
			return err
		},
	}
	cmd.Flags().StringVar(&host, "imap-host", "", "the old host's IMAP server (required)")
	cmd.Flags().IntVar(&port, "imap-port", 993, "IMAP port (implicit TLS)")
	cmd.Flags().StringVar(&user, "imap-user", "", "login name at the old host (required)")
	cmd.Flags().StringVar(&passFile, "password-file", "", "read the password from this file (mode 600) instead of asking")
	cmd.Flags().StringVar(&method, "method", "microsoft", "microsoft (migration batch) or imap-copy (direct copy through Graph)")
	cmd.Flags().BoolVar(&plain, "imap-plain", false, "no TLS (only to a loopback address, for tests)")
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
	return m365.NewExchange(cred, m365.ExchangeOptions{BaseURL: cfg.M365.ExchangeURL, TenantID: cfg.M365.TenantID})
}

func writeProgress(w io.Writer, p *migrate.Progress) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FOLDER\tFOUND\tMOVED")
	for _, f := range p.Folders {
		fmt.Fprintf(tw, "%s\t%d\t%d\n", visible.String(f.Name), f.Found, f.Moved)
	}
	tw.Flush()
}

func newImportStatusCmd(g *globalFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "status ADDRESS",
		Short:   "Show an import's progress: per folder, how many messages were found and moved",
		Example: "  dualmx import status scriba@hervormdputten.nl",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := openAdmin(g, false)
			if err != nil {
				return err
			}
			defer a.close()
			mailbox := strings.ToLower(args[0])
			p, err := migrate.LoadProgress(progressPath(a.cfg, mailbox))
			if err != nil {
				return err
			}
			if p == nil {
				return &exitError{code: 1, err: fmt.Errorf("no import started for %s; see dualmx import start --help", mailbox)}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "%s: %s import from %s (user %s), started %s\n", visible.String(mailbox), visible.String(p.Method), visible.String(p.Host), visible.String(p.User), p.Started.Local().Format("2006-01-02 15:04"))
			if p.Method != "microsoft" {
				writeProgress(out, p)
				return nil
			}
			if !a.cfg.M365.Enabled {
				return &exitError{code: 2, err: fmt.Errorf("%s has no m365: section", a.cfg.Path)}
			}
			ex, err := exchangeCommander(a.cfg)
			if err != nil {
				return err
			}
			st, err := migrate.GetBatchStatus(cmd.Context(), ex, mailbox)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "migration batch %s: %s\n", visible.String(st.Name), visible.String(st.Status))
			writeProgress(out, &migrate.Progress{Folders: []migrate.FolderProgress{{Name: "(all folders; Microsoft reports no per-folder counts)", Found: st.Found, Moved: st.Moved}}})
			if st.Failed {
				return &exitError{code: 1, err: fmt.Errorf("migration batch %s failed: %s", st.Name, dash(st.Error))}
			}
			return nil
		},
	}
	return cmd
}
