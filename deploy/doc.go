// SPDX-License-Identifier: MIT

// Package deploy holds no code. Its directory holds what an admin installs
// next to the binary (the example config, the Grafana dashboard, the
// Prometheus alert rules, the systemd unit and the Containerfile), and its
// tests check those files against the code: every metric a panel or an alert
// queries is one dualmx exports, every alert has promtool unit tests that fire
// it and that keep it quiet, and the unit and the Containerfile keep their
// hardening. Its tests also hold the repository to its rules: the package
// map's arrows point one way (TestLayout) and the README names every
// package, every fuzz target has a seed corpus, and every Go file names the
// licence.
package deploy
