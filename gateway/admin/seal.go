package admin

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// Secrets that arrive through the API (a channel's keys) are stored
// encrypted with AES-256-GCM, under a key derived from SLUICE_SECRET_KEY.
// Every instance of a cluster needs the same SLUICE_SECRET_KEY; without
// one, the API refuses to store secrets.

// sealedPrefix marks a sealed value, with the format's version.
const sealedPrefix = "enc:v1:"

// minSecretKey is the shortest SLUICE_SECRET_KEY accepted.
const minSecretKey = 16

// ErrNoSecretKey is why the API refuses to store a secret.
var ErrNoSecretKey = errors.New("storing secrets through the API needs SLUICE_SECRET_KEY, the same on every instance (at least 16 random characters: openssl rand -hex 32)")

// Sealer encrypts and decrypts stored secrets. A nil *Sealer seals
// nothing: it refuses with ErrNoSecretKey.
type Sealer struct{ aead cipher.AEAD }

// NewSealer derives the sealing key from SLUICE_SECRET_KEY's value.
func NewSealer(secret string) (*Sealer, error) {
	if len(secret) < minSecretKey {
		return nil, fmt.Errorf("SLUICE_SECRET_KEY: at least %d characters", minSecretKey)
	}
	key, err := hkdf.Key(sha256.New, []byte(secret), []byte("sluice admin"), "seal secrets v1", 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts a secret ("" stays "").
func (s *Sealer) Seal(plain string) (string, error) {
	if plain == "" || IsSealed(plain) {
		return plain, nil
	}
	if s == nil {
		return "", ErrNoSecretKey
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	out := s.aead.Seal(nonce, nonce, []byte(plain), []byte(sealedPrefix))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(out), nil
}

// Open decrypts a sealed secret; a value that is not sealed is returned
// as it is.
func (s *Sealer) Open(v string) (string, error) {
	if !IsSealed(v) {
		return v, nil
	}
	if s == nil {
		return "", ErrNoSecretKey
	}
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimPrefix(v, sealedPrefix))
	if err != nil || len(raw) < s.aead.NonceSize() {
		return "", errors.New("a sealed secret is corrupt")
	}
	plain, err := s.aead.Open(nil, raw[:s.aead.NonceSize()], raw[s.aead.NonceSize():], []byte(sealedPrefix))
	if err != nil {
		return "", errors.New("a sealed secret cannot be opened: is SLUICE_SECRET_KEY the same on every instance?")
	}
	return string(plain), nil
}

// IsSealed reports whether v is a sealed secret.
func IsSealed(v string) bool { return strings.HasPrefix(v, sealedPrefix) }
