// SPDX-License-Identifier: MIT

package migrate

import "strings"

// The import methods, named as the --method flag names them.
const (
	MethodMicrosoft = "microsoft" // Microsoft's IMAP migration batch
	MethodCopy      = "imap-copy" // dualmx's copy: IMAP in, Graph out
	MethodPST       = "pst"       // dualmx's copy from a PST file
)

// ChooseMethod picks how an IMAP mailbox is moved into a mailbox of the
// given kind (Get-Mailbox's RecipientTypeDetails), and says why.
// Microsoft's IMAP migration is for mailboxes it provisions for users
// (New-MigrationBatch: "For an IMAP migration, you must first provision
// mailboxes"); it does not document a shared mailbox as a target, so those
// get the Graph copy, which works for every mailbox.
func ChooseMethod(mailbox, kind string) (method, reason string) {
	switch {
	case strings.EqualFold(kind, "UserMailbox"):
		return MethodMicrosoft, mailbox + " is a user mailbox: Microsoft's own IMAP migration copies it on Microsoft's side " +
			"and keeps it in sync until the batch is completed"
	case strings.EqualFold(kind, "SharedMailbox"):
		return MethodCopy, mailbox + " is a shared mailbox: Microsoft does not document IMAP migration into shared mailboxes, " +
			"so dualmx copies the mail itself, over IMAP from the old host and through Microsoft Graph into the mailbox"
	}
	return MethodCopy, mailbox + " is a " + kind + ": dualmx copies the mail itself, over IMAP and through Microsoft Graph"
}
