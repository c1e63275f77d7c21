// SPDX-License-Identifier: MIT

package m365test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/dualmx/dualmx/m365"
)

// TestExtendedPropertyIDForms: the fake takes a proptag id as the Outlook
// extended properties overview writes it, a whole property tag ("String
// 0x4001001E"), as well as the identifier alone that migration tools
// write, in either case; a tag whose type part is not the type named is
// refused.
func TestExtendedPropertyIDForms(t *testing.T) {
	tn := New(t, "example.nl")
	tn.AddSharedMailbox("scriba@example.nl", "Scriba")
	tok, err := tn.Cred.GetToken(context.Background(), policy.TokenRequestOptions{Scopes: []string{m365.GraphScope}})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: tn.Transport()}
	post := func(props string) int {
		body := `{"subject":"s","body":{"contentType":"text","content":"b"},"isRead":false,"singleValueExtendedProperties":[` + props + `]}`
		req, _ := http.NewRequest("POST", tn.GraphURL()+"/users/scriba@example.nl/mailFolders/inbox/messages", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, c := range []struct {
		props string
		code  int
		draft bool
	}{
		{`{"id":"Integer 0x0E07","value":"0"}`, 201, false},
		{`{"id":"Integer 0x0E070003","value":"0"}`, 201, false},
		{`{"id":"Integer 0x0e07","value":"0"}`, 201, false},
		{`{"id":"Integer 0x0E07","value":"9"}`, 201, true},
		{`{"id":"Integer 0x0E07001F","value":"0"}`, 400, false},
		{`{"id":"Integer 0x0E0","value":"0"}`, 400, false},
	} {
		before := len(tn.Messages("scriba@example.nl")["Inbox"])
		if code := post(c.props); code != c.code {
			t.Errorf("%s: HTTP %d, want %d", c.props, code, c.code)
			continue
		}
		if c.code != 201 {
			continue
		}
		msgs := tn.Messages("scriba@example.nl")["Inbox"]
		if len(msgs) != before+1 || msgs[len(msgs)-1].IsDraft != c.draft {
			t.Errorf("%s: stored %+v, want isDraft %v", c.props, msgs, c.draft)
		}
	}
}
