// SPDX-License-Identifier: MIT

package config

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/prometheus/exporter-toolkit/web"
	"go.yaml.in/yaml/v3"
)

// webConfig is what dualmx reads of a Prometheus exporter web config file
// (the format node_exporter's --web.config.file takes): enough to judge its
// secrets and how much it protects. The toolkit itself parses and serves it.
type webConfig struct {
	TLS struct {
		Cert       string `yaml:"cert"`
		CertFile   string `yaml:"cert_file"`
		Key        string `yaml:"key"`
		KeyFile    string `yaml:"key_file"`
		ClientAuth string `yaml:"client_auth_type"`
	} `yaml:"tls_server_config"`
	Users map[string]string `yaml:"basic_auth_users"`
}

func readWebConfig(path string) (webConfig, error) {
	var w webConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return w, err
	}
	if err := yaml.Unmarshal(b, &w); err != nil {
		return w, err
	}
	// The toolkit reads relative file names against the file's directory.
	if w.TLS.KeyFile != "" && !filepath.IsAbs(w.TLS.KeyFile) {
		w.TLS.KeyFile = filepath.Join(filepath.Dir(path), w.TLS.KeyFile)
	}
	return w, nil
}

// checkWebConfig returns why the web config file at path cannot be used, or
// "". The toolkit checks the format, the bcrypt hashes and that the
// certificate and key load; dualmx adds its rule for secrets: the TLS key,
// in its own file or written into this one, must not be readable by group
// or others. The bcrypt hashes are not secrets (they are what a password is
// checked against), so a file without a key may be readable.
func checkWebConfig(path string) string {
	if err := web.Validate(path); err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	w, err := readWebConfig(path)
	if err != nil {
		return fmt.Sprintf("%s: %v", path, err)
	}
	if w.TLS.Key != "" {
		if msg := checkPrivate(path); msg != "" {
			return msg + " (it holds the TLS private key in tls_server_config.key)"
		}
	}
	if w.TLS.KeyFile != "" {
		if msg := checkPrivate(w.TLS.KeyFile); msg != "" {
			return "tls_server_config.key_file: " + msg
		}
	}
	return ""
}

// webExposure says what a listener with this web config file lacks, as a
// phrase for a warning: "" when it has TLS and authentication (basic auth or
// verified client certificates). An unreadable file says nothing; the file
// check reports it.
func webExposure(path string) string {
	if path == "" {
		return "without TLS or authentication"
	}
	w, err := readWebConfig(path)
	if err != nil {
		return ""
	}
	tls := w.TLS.Cert != "" || w.TLS.CertFile != ""
	auth := len(w.Users) > 0 || w.TLS.ClientAuth == "RequireAndVerifyClientCert"
	switch {
	case !tls && !auth:
		return "without TLS or authentication"
	case !auth:
		return "without authentication"
	case !tls:
		return "with basic auth but without TLS, so the password crosses the network in clear text,"
	}
	return ""
}

// loopback reports whether a listen address is on the loopback interface only.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return true // an invalid address is an error already, not a warning
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
