// SPDX-License-Identifier: MIT

package m365

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dualmx/dualmx/mailmsg"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestCreateBodyGolden pins the JSON of an imported message's create
// request: the fields of Graph's message resource and the extended
// properties that make it a received message (importProperties).
func TestCreateBodyGolden(t *testing.T) {
	m := &MailImport{Message: mailmsg.Message{Subject: "Kerkdienst 10 maart", From: &mailmsg.Address{Name: "Anna de Vries", Addr: "anna@example.org"},
		To: []mailmsg.Address{{Addr: "scriba@hervormdputten.nl"}}, ReplyTo: []mailmsg.Address{{Name: "Kerkenraad", Addr: "kerkenraad@example.org"}},
		InternetMessageID: "<1@example.org>", Body: "<p>Hallo</p>", HTML: true, Importance: "high",
		Sent:        time.Date(2019, 3, 4, 8, 59, 0, 0, time.UTC),
		Attachments: []mailmsg.Attachment{{Name: "logo.png", ContentType: "image/png", ContentID: "logo@x", Inline: true, Data: []byte("png")}}},
		Received: time.Date(2019, 3, 4, 10, 0, 0, 0, time.FixedZone("CET", 3600)), Read: true, Flagged: true, Key: "0123abcd"}
	body, later, err := createBody(m)
	if err != nil || len(later) != 0 {
		t.Fatalf("createBody: %v, %d later", err, len(later))
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatal(err)
	}
	pretty.WriteByte('\n')
	golden := filepath.Join("testdata", "create_message.golden.json")
	if *update {
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pretty.Bytes(), want) {
		t.Errorf("create body differs from %s (go test -update to rewrite):\n%s", golden, pretty.String())
	}
}
