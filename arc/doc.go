// SPDX-License-Identifier: MIT

// Package arc validates and adds Authenticated Received Chain sets (RFC
// 8617) so that a message dualmx forwards keeps the authentication verdict
// it arrived with. Verify judges the chain a message arrived with; Sealer
// adds dualmx's set on the way out. Neither changes the message: Seal only
// returns the three fields to prepend, which is what keeps the author's
// DKIM signature intact.
//
// Canonicalisation is implemented here rather than taken from go-msgauth,
// whose dkim package keeps its canonicalisers private; bodies are hashed as
// they stream past, so a message's size costs time, not memory.
package arc
