// SPDX-License-Identifier: MIT

package queue

import (
	"context"
	"strconv"
)

// ProbeTarget connects to the target as delivery would (same TLS policy and
// certificate checks) and reports its SIZE limit (0 when it names none) and
// whether it takes 8BITMIME. smtpd caps its own SIZE to the target's, so a
// message it accepts is not refused for size downstream.
func ProbeTarget(ctx context.Context, opts Options) (size int64, has8bit bool, err error) {
	opts.setDefaults()
	d := opts.dialer()
	c, err := d.connect(ctx)
	if err != nil {
		return 0, false, classify(err)
	}
	defer c.quit()
	if ok, v := c.ext("SIZE"); ok && v != "" {
		size, _ = strconv.ParseInt(v, 10, 64)
	}
	has8bit, _ = c.ext("8BITMIME")
	return size, has8bit, nil
}
