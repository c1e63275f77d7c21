// SPDX-License-Identifier: MIT

package courier

import (
	"sync"
	"time"
)

// pool keeps idle connections per next hop, so a burst of messages costs one
// TLS handshake instead of one per message. A timer closes connections idle
// for longer than the timeout; it runs only while some are idle.
type pool struct {
	mu      sync.Mutex
	idle    map[string][]*client
	max     int
	timeout time.Duration
	now     func() time.Time
	closed  bool
	reaper  *time.Timer // nil while nothing is idle
}

func newPool(max int, timeout time.Duration, now func() time.Time) *pool {
	return &pool{idle: map[string][]*client{}, max: max, timeout: timeout, now: now}
}

// get returns the most recently used live connection to key, or nil.
func (p *pool) get(key string) *client {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		c := list[len(list)-1]
		list = list[:len(list)-1]
		if p.now().Sub(c.lastUsed) < p.timeout {
			p.idle[key] = list
			return c
		}
		go c.quit()
	}
	delete(p.idle, key)
	return nil
}

// put returns a connection after a completed transaction.
func (p *pool) put(c *client) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[c.key]) >= p.max || p.timeout <= 0 {
		go c.quit()
		return
	}
	c.lastUsed = p.now()
	p.idle[c.key] = append(p.idle[c.key], c)
	if p.reaper == nil {
		p.reaper = time.AfterFunc(p.timeout, p.reap)
	}
}

// reap closes connections idle for longer than the timeout, before the
// target closes them on its side, and sets the timer for the next to expire.
func (p *pool) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var next time.Duration
	for key, list := range p.idle {
		keep := list[:0]
		for _, c := range list {
			if left := p.timeout - now.Sub(c.lastUsed); left <= 0 {
				go c.quit()
			} else {
				keep = append(keep, c)
				if next == 0 || left < next {
					next = left
				}
			}
		}
		if len(keep) == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = keep
		}
	}
	switch {
	case p.reaper == nil:
	case next > 0 && !p.closed:
		p.reaper.Reset(next)
	default:
		p.reaper = nil
	}
}

// closeAll says QUIT to every idle connection and waits for them, bounded by quit's deadline.
func (p *pool) closeAll() {
	p.mu.Lock()
	p.closed = true
	if p.reaper != nil {
		p.reaper.Stop()
		p.reaper = nil
	}
	var all []*client
	for _, list := range p.idle {
		all = append(all, list...)
	}
	p.idle = map[string][]*client{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range all {
		wg.Add(1)
		go func() { defer wg.Done(); c.quit() }()
	}
	wg.Wait()
}

// trim closes idle connections beyond n for every next hop, oldest first.
func (p *pool) trim(n int) {
	p.mu.Lock()
	var drop []*client
	for key, list := range p.idle {
		if len(list) <= n {
			continue
		}
		k := len(list) - n
		drop = append(drop, list[:k]...)
		if n == 0 {
			delete(p.idle, key)
		} else {
			p.idle[key] = append(list[:0:0], list[k:]...)
		}
	}
	p.mu.Unlock()
	for _, c := range drop {
		go c.quit()
	}
}
