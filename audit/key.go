package audit

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// Key files are PEM: the private key as PKCS #8 ("PRIVATE KEY"), the public
// key as PKIX ("PUBLIC KEY"), the forms openssl reads, so an auditor can check
// a checkpoint signature with standard tools.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// loadOrCreateKey reads the Ed25519 private key at path, or generates one
// and writes it there (mode 0600, never overwriting a file another process
// created meanwhile) with its public key beside it at path+".pub".
func loadOrCreateKey(path string) (priv ed25519.PrivateKey, created bool, err error) {
	priv, err = readPrivateKey(path)
	if err == nil {
		return priv, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	_, priv, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generating signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("encoding signing key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		// Another process won the race: use its key.
		priv, err = readPrivateKey(path)
		return priv, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("creating signing key %s: %w", path, err)
	}
	werr := pem.Encode(f, &pem.Block{Type: pemPrivate, Bytes: der})
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("writing signing key %s: %w", path, werr)
	}
	if err := writePublicKey(path+".pub", priv.Public().(ed25519.PublicKey)); err != nil {
		return nil, false, err
	}
	return priv, true, nil
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading signing key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPrivate {
		return nil, fmt.Errorf("reading signing key %s: not a PEM %q block", path, pemPrivate)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("reading signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("reading signing key %s: %T is not an Ed25519 key", path, k)
	}
	return priv, nil
}

func writePublicKey(path string, pub ed25519.PublicKey) error {
	b, err := MarshalPublicKey(pub)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing public key: %w", err)
	}
	return nil
}

// MarshalPublicKey returns pub as a PKIX PEM block, the form LoadPublicKey
// and openssl read.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// LoadPublicKey reads the Ed25519 public key that verifies checkpoints from
// path, which may hold either the public key (PEM "PUBLIC KEY", what an
// auditor is given) or the private signing key (PEM "PRIVATE KEY").
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("reading public key %s: no PEM block", path)
	}
	switch blk.Type {
	case pemPublic:
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("reading public key %s: %w", path, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("reading public key %s: %T is not an Ed25519 key", path, k)
		}
		return pub, nil
	case pemPrivate:
		priv, err := readPrivateKey(path)
		if err != nil {
			return nil, err
		}
		return priv.Public().(ed25519.PublicKey), nil
	default:
		return nil, fmt.Errorf("reading public key %s: unexpected PEM block %q", path, blk.Type)
	}
}

// KeyID returns a short fingerprint of pub: the first 8 bytes of its SHA-256,
// in hex. Checkpoints record it so a verify with the wrong key says so.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}
