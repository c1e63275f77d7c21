// SPDX-License-Identifier: MIT

package m365

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"

	"github.com/dualmx/dualmx/internal/secretfile"
)

// App is the app registration dualmx signs in as (config's m365 section).
type App struct {
	TenantID, ClientID string
	// Exactly one of these names a file: a client secret, or a PEM/PKCS#12
	// certificate with its (unencrypted, RSA) private key.
	ClientSecretFile, CertificateFile string
	// Endpoints says where to sign in (the cloud's Entra host unless
	// AuthorityURL replaces it).
	Endpoints Endpoints
	// Transport carries the sign-in requests; nil is the default HTTP
	// client, which verifies TLS against the system's roots (and
	// SSL_CERT_FILE).
	Transport policy.Transporter
}

// Credential returns an app-only credential that reads its secret or
// certificate file at the first token request, not before: a command that
// never talks to Microsoft 365 never touches the secret, and a key rotated
// on disk is picked up by the next run without a config change.
func Credential(app App) (azcore.TokenCredential, error) {
	if app.TenantID == "" || app.ClientID == "" {
		return nil, errors.New("m365: tenant_id and client_id are required")
	}
	if (app.ClientSecretFile == "") == (app.CertificateFile == "") {
		return nil, errors.New("m365: set exactly one of client_secret_file and certificate_file")
	}
	if app.Endpoints.Cloud.Authority == "" {
		app.Endpoints.Cloud, _ = CloudByName("")
	}
	if _, err := checkHTTPS("authority url", app.Endpoints.Authority()); err != nil {
		return nil, err
	}
	return &lazyCredential{app: app}, nil
}

type lazyCredential struct {
	app  App
	once sync.Once
	cred azcore.TokenCredential
	err  error
}

func (l *lazyCredential) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	l.once.Do(func() { l.cred, l.err = l.build() })
	if l.err != nil {
		return azcore.AccessToken{}, l.err
	}
	return l.cred.GetToken(ctx, opts)
}

// maxCredentialFile bounds a client secret or certificate file (a PEM
// certificate chain with its key is a few kilobytes).
const maxCredentialFile = 1 << 20

// build never puts file contents into its errors: a malformed secret file
// must not end up in a log line.
func (l *lazyCredential) build() (azcore.TokenCredential, error) {
	a := l.app
	co := azcore.ClientOptions{Cloud: cloud.Configuration{ActiveDirectoryAuthorityHost: a.Endpoints.Authority()}, Transport: a.Transport}
	custom := a.Endpoints.CustomAuthority()
	if a.ClientSecretFile != "" {
		b, err := secretfile.Read(a.ClientSecretFile, maxCredentialFile)
		if err != nil {
			return nil, fmt.Errorf("m365: client secret: %w", err)
		}
		secret := trimSecret(b)
		if secret == "" {
			return nil, fmt.Errorf("m365: client secret file %s is empty", a.ClientSecretFile)
		}
		c, err := azidentity.NewClientSecretCredential(a.TenantID, a.ClientID, secret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: custom})
		if err != nil {
			return nil, fmt.Errorf("m365: client secret credential: %w", err)
		}
		return c, nil
	}
	b, err := secretfile.Read(a.CertificateFile, maxCredentialFile)
	if err != nil {
		return nil, fmt.Errorf("m365: certificate: %w", err)
	}
	certs, key, err := azidentity.ParseCertificates(b, nil)
	if err != nil {
		return nil, fmt.Errorf("m365: certificate file %s: cannot load certificate and unencrypted RSA key (encrypted PEM keys are not supported)", a.CertificateFile)
	}
	c, err := azidentity.NewClientCertificateCredential(a.TenantID, a.ClientID, certs, key,
		&azidentity.ClientCertificateCredentialOptions{ClientOptions: co, DisableInstanceDiscovery: custom})
	if err != nil {
		return nil, fmt.Errorf("m365: certificate credential: %w", err)
	}
	return c, nil
}

// trimSecret drops the trailing newline editors add, and surrounding blanks,
// which Entra would otherwise reject as a wrong secret.
func trimSecret(b []byte) string {
	s := string(b)
	for len(s) > 0 && (s[len(s)-1] == '\n' || s[len(s)-1] == '\r' || s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	return s
}
