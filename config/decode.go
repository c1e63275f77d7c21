// SPDX-License-Identifier: MIT

package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// field is one leaf key of the file. The table below is the single list of
// keys: the decoder, the unknown-key check, Redacted and the example-file
// test all read it, so a key cannot be added to one and forgotten in another.
type field struct {
	path string
	// ptr returns a pointer to the Config field; its type selects the decoder.
	ptr func(*Config) any
	// file marks paths that are resolved against the config file's directory.
	file bool
}

// optionalSections switch a feature on by being present in the file; their
// keys are documented in the example file as comments rather than set there.
var optionalSections = []string{"arc", "srs", "m365", "cutover"}

var schema = []field{
	{path: "hostname", ptr: func(c *Config) any { return &c.Hostname }},
	{path: "state_dir", ptr: func(c *Config) any { return &c.StateDir }, file: true},
	{path: "log_format", ptr: func(c *Config) any { return &c.LogFormat }},
	{path: "listen.smtp", ptr: func(c *Config) any { return &c.Listen.SMTP }},
	{path: "listen.metrics", ptr: func(c *Config) any { return &c.Listen.Metrics }},
	{path: "listen.metrics_web_config", ptr: func(c *Config) any { return &c.Listen.MetricsWebConfig }, file: true},
	{path: "listen.status", ptr: func(c *Config) any { return &c.Listen.Status }},
	{path: "listen.status_web_config", ptr: func(c *Config) any { return &c.Listen.StatusWebConfig }, file: true},
	{path: "listen.http_hosts", ptr: func(c *Config) any { return &c.Listen.HTTPHosts }},
	{path: "inbound.max_message_bytes", ptr: func(c *Config) any { return &c.Inbound.MaxMessageBytes }},
	{path: "inbound.max_recipients", ptr: func(c *Config) any { return &c.Inbound.MaxRecipients }},
	{path: "inbound.max_connections", ptr: func(c *Config) any { return &c.Inbound.MaxConnections }},
	{path: "inbound.read_timeout", ptr: func(c *Config) any { return &c.Inbound.ReadTimeout }},
	{path: "inbound.allowed_networks", ptr: func(c *Config) any { return &c.Inbound.AllowedNetworks }},
	{path: "inbound.tls_cert_file", ptr: func(c *Config) any { return &c.Inbound.TLSCertFile }, file: true},
	{path: "inbound.tls_key_file", ptr: func(c *Config) any { return &c.Inbound.TLSKeyFile }, file: true},
	{path: "target.host", ptr: func(c *Config) any { return &c.Target.Host }},
	{path: "target.port", ptr: func(c *Config) any { return &c.Target.Port }},
	{path: "target.tls", ptr: func(c *Config) any { return &c.Target.TLS }},
	{path: "target.ca_file", ptr: func(c *Config) any { return &c.Target.CAFile }, file: true},
	{path: "target.dane_trust_anchor_file", ptr: func(c *Config) any { return &c.Target.DaneTrustAnchorFile }, file: true},
	{path: "target.ip_family", ptr: func(c *Config) any { return &c.Target.IPFamily }},
	{path: "delivery.retry_initial", ptr: func(c *Config) any { return &c.Delivery.RetryInitial }},
	{path: "delivery.retry_max", ptr: func(c *Config) any { return &c.Delivery.RetryMax }},
	{path: "delivery.give_up_after", ptr: func(c *Config) any { return &c.Delivery.GiveUpAfter }},
	{path: "delivery.on_permanent_failure", ptr: func(c *Config) any { return &c.Delivery.OnPermanentFailure }},
	{path: "delivery.concurrency", ptr: func(c *Config) any { return &c.Delivery.Concurrency }},
	{path: "delivery.sender_concurrency", ptr: func(c *Config) any { return &c.Delivery.SenderConcurrency }},
	{path: "delivery.mx_port", ptr: func(c *Config) any { return &c.Delivery.MXPort }},
	{path: "delivery.mx_allow_loopback", ptr: func(c *Config) any { return &c.Delivery.MXAllowLoopback }},
	{path: "resolver", ptr: func(c *Config) any { return &c.Resolver }},
	{path: "inbound.max_received", ptr: func(c *Config) any { return &c.Inbound.MaxReceived }},
	{path: "inbound.max_connections_per_ip", ptr: func(c *Config) any { return &c.Inbound.MaxConnectionsPerIP }},
	{path: "inbound.max_header_bytes", ptr: func(c *Config) any { return &c.Inbound.MaxHeaderBytes }},
	{path: "inbound.routing_max_stale", ptr: func(c *Config) any { return &c.Inbound.RoutingMaxStale }},
	{path: "inbound.max_session", ptr: func(c *Config) any { return &c.Inbound.MaxSession }},
	{path: "delivery.command_timeout", ptr: func(c *Config) any { return &c.Delivery.CommandTimeout }},
	{path: "delivery.data_timeout", ptr: func(c *Config) any { return &c.Delivery.DataTimeout }},
	{path: "arc.domain", ptr: func(c *Config) any { return &c.ARC.Domain }},
	{path: "arc.selector", ptr: func(c *Config) any { return &c.ARC.Selector }},
	{path: "arc.key_file", ptr: func(c *Config) any { return &c.ARC.KeyFile }, file: true},
	{path: "arc.headers", ptr: func(c *Config) any { return &c.ARC.Headers }},
	{path: "srs.domain", ptr: func(c *Config) any { return &c.SRS.Domain }},
	{path: "srs.secret_file", ptr: func(c *Config) any { return &c.SRS.SecretFile }, file: true},
	{path: "srs.previous_secret_files", ptr: func(c *Config) any { return &c.SRS.PreviousSecretFiles }, file: true},
	{path: "srs.max_age", ptr: func(c *Config) any { return &c.SRS.MaxAge }},
	{path: "srs.dsn_per_hour", ptr: func(c *Config) any { return &c.SRS.DSNPerHour }},
	{path: "srs.dsn_per_client_per_hour", ptr: func(c *Config) any { return &c.SRS.DSNPerClientPerHour }},
	{path: "srs.dsn_per_destination_per_hour", ptr: func(c *Config) any { return &c.SRS.DSNPerDestinationPerHour }},
	{path: "srs.guesses_per_client", ptr: func(c *Config) any { return &c.SRS.GuessesPerClient }},
	{path: "srs.guess_penalty", ptr: func(c *Config) any { return &c.SRS.GuessPenalty }},
	{path: "srs.guesses_per_hour", ptr: func(c *Config) any { return &c.SRS.GuessesPerHour }},
	{path: "srs.return_sources", ptr: func(c *Config) any { return &c.SRS.ReturnSources }},
	{path: "srs.return_source_penalty", ptr: func(c *Config) any { return &c.SRS.ReturnSourcePenalty }},
	{path: "m365.tenant_id", ptr: func(c *Config) any { return &c.M365.TenantID }},
	{path: "m365.client_id", ptr: func(c *Config) any { return &c.M365.ClientID }},
	{path: "m365.client_secret_file", ptr: func(c *Config) any { return &c.M365.ClientSecretFile }, file: true},
	{path: "m365.certificate_file", ptr: func(c *Config) any { return &c.M365.CertificateFile }, file: true},
	{path: "m365.cloud", ptr: func(c *Config) any { return &c.M365.Cloud }},
	{path: "m365.authority_url", ptr: func(c *Config) any { return &c.M365.AuthorityURL }},
	{path: "m365.graph_url", ptr: func(c *Config) any { return &c.M365.GraphURL }},
	{path: "m365.exchange_url", ptr: func(c *Config) any { return &c.M365.ExchangeURL }},
	{path: "cutover.domain", ptr: func(c *Config) any { return &c.Cutover.Domain }},
	{path: "cutover.old_mx", ptr: func(c *Config) any { return &c.Cutover.OldMX }},
	{path: "cutover.tenant_mx", ptr: func(c *Config) any { return &c.Cutover.TenantMX }},
	{path: "cutover.old_spf", ptr: func(c *Config) any { return &c.Cutover.OldSPF }},
	{path: "cutover.forward_domain", ptr: func(c *Config) any { return &c.Cutover.ForwardDomain }},
	{path: "cutover.relay_host", ptr: func(c *Config) any { return &c.Cutover.RelayHost }},
	{path: "cutover.dkim_selector1", ptr: func(c *Config) any { return &c.Cutover.DKIMSelector1 }},
	{path: "cutover.dkim_selector2", ptr: func(c *Config) any { return &c.Cutover.DKIMSelector2 }},
	{path: "cutover.verification_txt", ptr: func(c *Config) any { return &c.Cutover.VerificationTXT }},
	{path: "cutover.quiet_period", ptr: func(c *Config) any { return &c.Cutover.QuietPeriod }},
}

func lookupField(path string) *field {
	for i := range schema {
		if schema[i].path == path {
			return &schema[i]
		}
	}
	return nil
}

// childKeys lists the names directly under prefix ("" for the top level),
// leaves and sections alike, in table order.
func childKeys(prefix string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range schema {
		rest, ok := f.path, true
		if prefix != "" {
			rest, ok = strings.CutPrefix(f.path, prefix+".")
		}
		if !ok {
			continue
		}
		name, _, _ := strings.Cut(rest, ".")
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

func isSection(path string) bool {
	for _, f := range schema {
		if strings.HasPrefix(f.path, path+".") {
			return true
		}
	}
	return false
}

// Parse decodes data (the contents of the file at path) over Default and
// validates the result. path names the file in problems and anchors relative
// paths; it is not read. On failure the error is a Problems value listing
// every error found.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data, true)
}

// parse is Parse; without files it does not look at the files the config
// names (see LoadSettings).
func parse(path string, data []byte, files bool) (*Config, error) {
	c := Default()
	c.Path = path
	c.origin = map[string]origin{}
	d := &decoder{file: path, c: &c}
	d.document(data)

	if base, err := filepath.Abs(filepath.Dir(path)); err == nil {
		for _, f := range schema {
			if !f.file {
				continue
			}
			switch p := f.ptr(&c).(type) {
			case *string:
				if *p != "" && !filepath.IsAbs(*p) {
					*p = filepath.Join(base, *p)
				}
			case *[]string:
				for i, v := range *p {
					if v != "" && !filepath.IsAbs(v) {
						(*p)[i] = filepath.Join(base, v)
					}
				}
			}
		}
	}

	for _, f := range schema {
		if o, ok := c.origin[f.path]; ok {
			o.value = display(f.ptr(&c))
			c.origin[f.path] = o
		}
	}

	for _, sec := range optionalSections {
		_, on := c.origin[sec]
		c.setEnabled(sec, on)
	}

	if d.syntaxErr {
		// Nothing after the broken spot was read, so value checks would only
		// add noise such as "hostname: required" for a hostname that is there.
		return nil, d.probs
	}
	d.probs = append(d.probs, c.check(d.probs, files)...)
	if len(d.probs) > 0 {
		d.probs.sortByLine()
		return nil, d.probs
	}
	return &c, nil
}

type decoder struct {
	file      string
	c         *Config
	probs     Problems
	syntaxErr bool
}

func (d *decoder) errorf(n *yaml.Node, key, format string, args ...any) {
	d.probs.add(d.file, n.Line, key, format, args...)
}

// yamlErrLine picks the line out of the parser's error text; the library has
// no typed syntax error, and a syntax problem without its line is of little use.
var yamlErrLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (d *decoder) document(data []byte) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return // an empty file: the required-key checks will speak
		}
		d.syntax(err)
		return
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		d.errorf(&extra, "", "a second YAML document; the file must hold exactly one")
	} else if !errors.Is(err, io.EOF) {
		d.syntax(err)
	}
	if len(doc.Content) == 0 {
		return
	}
	d.section(doc.Content[0], "")
}

func (d *decoder) syntax(err error) {
	d.syntaxErr = true
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlErrLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	d.probs.add(d.file, line, "", "invalid YAML: %s", msg)
}

// section decodes a mapping whose keys live under prefix.
func (d *decoder) section(n *yaml.Node, prefix string) {
	if isNull(n) {
		return // "inbound:" with nothing under it keeps the defaults
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, prefix, "expected a mapping of keys, found %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.errorf(k, prefix, "a key must be a plain name, found %s", describe(k))
			continue
		}
		path := k.Value
		if prefix != "" {
			path = prefix + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			d.errorf(k, path, "duplicate key (first set on line %d)", first)
			continue
		}
		seen[k.Value] = k.Line
		switch f := lookupField(path); {
		case f != nil:
			d.c.origin[path] = origin{line: k.Line}
			d.leaf(v, path, f.ptr(d.c))
		case isSection(path):
			d.c.origin[path] = origin{line: k.Line}
			d.section(v, path)
		default:
			d.errorf(k, path, "unknown key%s", suggest(k.Value, childKeys(prefix)))
		}
	}
}

func (d *decoder) leaf(v *yaml.Node, key string, ptr any) {
	if v.Kind == yaml.AliasNode {
		// Refused rather than resolved: aliases buy nothing in a file this
		// small and would let one value silently follow another.
		d.errorf(v, key, "YAML aliases (*%s) are not supported; write the value out", clip(v.Value))
		return
	}
	switch p := ptr.(type) {
	case *string:
		if s, ok := d.str(v, key); ok {
			*p = s
		}
	case *int:
		if i, ok := d.integer(v, key); ok {
			if int64(int(i)) != i {
				d.errorf(v, key, "%s is out of range", show(v))
				return
			}
			*p = int(i)
		}
	case *int64:
		if i, ok := d.integer(v, key); ok {
			*p = i
		}
	case *bool:
		if b, ok := d.boolean(v, key); ok {
			*p = b
		}
	case *time.Duration:
		if dur, ok := d.duration(v, key); ok {
			*p = dur
		}
	case *[]netip.Prefix:
		if ps, ok := d.prefixes(v, key); ok {
			*p = ps
		}
	case *[]string:
		if ss, ok := d.strings(v, key); ok {
			*p = ss
		}
	default:
		panic(fmt.Sprintf("config: no decoder for %s (%T)", key, ptr))
	}
}

func (d *decoder) str(v *yaml.Node, key string) (string, bool) {
	switch {
	case isNull(v):
		return "", true
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		return v.Value, true
	case v.Kind == yaml.ScalarNode && (v.Tag == "!!int" || v.Tag == "!!float" || v.Tag == "!!bool"):
		d.errorf(v, key, "%s is %s, expected a string (quote it if you mean the text)", show(v), describe(v))
	default:
		d.errorf(v, key, "expected a string, found %s", describe(v))
	}
	return "", false
}

// boolean takes true or false and nothing else: YAML 1.1's yes, no, on and
// off are refused, not guessed at.
func (d *decoder) boolean(v *yaml.Node, key string) (bool, bool) {
	if v.Kind == yaml.ScalarNode && v.Tag == "!!bool" {
		switch v.Value {
		case "true":
			return true, true
		case "false":
			return false, true
		}
	}
	d.errorf(v, key, "%s is %s, expected true or false", show(v), describe(v))
	return false, false
}

func (d *decoder) integer(v *yaml.Node, key string) (int64, bool) {
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!int":
		var i int64
		if err := v.Decode(&i); err != nil {
			d.errorf(v, key, "%s is out of range", show(v))
			return 0, false
		}
		return i, true
	case v.Kind == yaml.ScalarNode && v.Tag == "!!float" && outOfRange(v.Value):
		// The library types an integer too big for int64 as a float.
		d.errorf(v, key, "%s is out of range", show(v))
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		if _, err := strconv.ParseInt(v.Value, 10, 64); err == nil {
			d.errorf(v, key, "%s is quoted; write the number without quotes", show(v))
			return 0, false
		}
		d.errorf(v, key, "%s is not an integer", show(v))
	case isNull(v):
		d.errorf(v, key, "has no value; give a number or remove the key to use the default")
	case v.Kind == yaml.ScalarNode:
		d.errorf(v, key, "%s is not an integer", show(v))
	default:
		d.errorf(v, key, "expected an integer, found %s", describe(v))
	}
	return 0, false
}

func (d *decoder) duration(v *yaml.Node, key string) (time.Duration, bool) {
	switch {
	case v.Kind == yaml.ScalarNode && v.Tag == "!!str":
		dur, err := time.ParseDuration(v.Value)
		if err == nil {
			return dur, true
		}
		if _, err := strconv.ParseFloat(v.Value, 64); err == nil {
			d.errorf(v, key, "%s has no unit (use Go syntax, e.g. %ss)", show(v), v.Value)
			return 0, false
		}
		d.errorf(v, key, "%s is not a duration (use Go syntax, e.g. 1h30m)", show(v))
	case v.Kind == yaml.ScalarNode && (v.Tag == "!!int" || v.Tag == "!!float"):
		// A bare number is refused, not read as seconds or nanoseconds: either
		// guess is wrong for somebody, and the wrong guess fails silently.
		d.errorf(v, key, "%s has no unit (use Go syntax, e.g. %ss or 5m)", show(v), v.Value)
	case isNull(v):
		d.errorf(v, key, "has no value; give a duration or remove the key to use the default")
	case v.Kind == yaml.ScalarNode:
		d.errorf(v, key, "%s is not a duration (use Go syntax, e.g. 1h30m)", show(v))
	default:
		d.errorf(v, key, "expected a duration, found %s", describe(v))
	}
	return 0, false
}

// strings reads a list of strings, checking every element.
func (d *decoder) strings(v *yaml.Node, key string) ([]string, bool) {
	if isNull(v) {
		return nil, true
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, key, "expected a list (e.g. [a, b]), found %s", describe(v))
		return nil, false
	}
	out := make([]string, 0, len(v.Content))
	ok := true
	for i, e := range v.Content {
		s, sok := d.str(e, fmt.Sprintf("%s[%d]", key, i))
		if !sok {
			ok = false
			continue
		}
		out = append(out, s)
	}
	return out, ok
}

// prefixes reads a list of CIDRs or single addresses. Every element is
// checked, so one typo does not hide the next.
func (d *decoder) prefixes(v *yaml.Node, key string) ([]netip.Prefix, bool) {
	if isNull(v) {
		return nil, true
	}
	if v.Kind != yaml.SequenceNode {
		d.errorf(v, key, "expected a list of networks (e.g. [10.0.0.0/8, 192.0.2.7]), found %s", describe(v))
		return nil, false
	}
	out := make([]netip.Prefix, 0, len(v.Content))
	ok := true
	for i, e := range v.Content {
		ekey := fmt.Sprintf("%s[%d]", key, i)
		s, sok := d.str(e, ekey)
		if !sok {
			ok = false
			continue
		}
		p, msg := parseNetwork(s)
		if msg != "" {
			d.errorf(e, ekey, "%s", msg)
			ok = false
			continue
		}
		out = append(out, p)
	}
	return out, ok
}

// parseNetwork accepts "10.0.0.0/8" or "192.0.2.7"; it returns a reason when
// the text is neither.
func parseNetwork(s string) (netip.Prefix, string) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Sprintf("%q is not a CIDR network (e.g. 10.0.0.0/8)", clip(s))
		}
		// Host bits set usually means the wrong mask length was typed;
		// silently masking would allow a different network than intended.
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Sprintf("%q has host bits set; did you mean %s?", s, m)
		}
		return p, ""
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Sprintf("%q is not an IP address or CIDR network", clip(s))
	}
	return netip.PrefixFrom(a, a.BitLen()), ""
}

func outOfRange(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return errors.Is(err, strconv.ErrRange)
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names a node's type in the words an operator would use.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.Tag {
	case "!!str":
		return "a string"
	case "!!int", "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "empty"
	}
	return "a value tagged " + clip(n.Tag)
}

// show renders a scalar as it appeared, quoting strings so that whitespace
// and the difference between "25" and 25 are visible.
func show(n *yaml.Node) string {
	if n.Tag == "!!str" {
		return strconv.Quote(clip(n.Value))
	}
	return clip(n.Value)
}

// clip keeps a pasted certificate or a fuzzer's megabyte from flooding the log.
func clip(s string) string {
	const max = 60
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}

// suggest returns " (did you mean X?)" for a near miss, or the list of valid
// keys when nothing is close.
func suggest(got string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := levenshtein(got, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %s?)", best)
	}
	return fmt.Sprintf(" (known keys: %s)", strings.Join(known, ", "))
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64 // keys are short; do not spend time on a fuzzer's giant key
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
