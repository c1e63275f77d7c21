// SPDX-License-Identifier: MIT

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
)

// cmdFsyncProbe measures what one durable small write costs on the file
// system the spools live on: create a file, write 4 KiB, fsync it, rename it,
// fsync the directory (the pattern dualmx's spool follows), N times in a row.
// It gives the results file a sense of scale: the throughput of any relay that
// fsyncs is bounded by this unless it overlaps commits.
func cmdFsyncProbe(args []string) error {
	if len(args) != 2 {
		return errors.New("usage: benchtool fsyncprobe DIR N")
	}
	n, err := strconv.Atoi(args[1])
	if err != nil || n < 1 || n > 10000 {
		return errors.New("fsyncprobe: N must be 1..10000")
	}
	dir, err := os.MkdirTemp(args[0], "fsyncprobe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	buf := make([]byte, 4096)
	file, dirSync := make([]time.Duration, 0, n), make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		tmp := filepath.Join(dir, fmt.Sprintf("tmp.%d", i))
		t0 := time.Now()
		f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		t1 := time.Now()
		if err := os.Rename(tmp, filepath.Join(dir, fmt.Sprintf("msg.%d", i))); err != nil {
			return err
		}
		if err := d.Sync(); err != nil {
			return err
		}
		file = append(file, t1.Sub(t0))
		dirSync = append(dirSync, time.Since(t1))
	}
	slices.Sort(file)
	slices.Sort(dirSync)
	ms := func(x time.Duration) string { return fmt.Sprintf("%.3f", float64(x)/1e6) }
	fmt.Printf("n=%d\nfile_fsync_median_ms=%s\nfile_fsync_p90_ms=%s\ndir_fsync_median_ms=%s\ndir_fsync_p90_ms=%s\n",
		n, ms(file[n/2]), ms(file[n*9/10]), ms(dirSync[n/2]), ms(dirSync[n*9/10]))
	return nil
}
