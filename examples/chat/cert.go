package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"time"
)

// certificate loads the key pair in certFile and keyFile or, when both are "",
// makes a throwaway one with selfSigned.
func certificate(certFile, keyFile string) (cert tls.Certificate, generated bool, err error) {
	switch {
	case certFile == "" && keyFile == "":
		cert, err = selfSigned(time.Now())
		return cert, true, err
	case certFile == "" || keyFile == "":
		return cert, false, errors.New("-cert and -key go together")
	}
	cert, err = tls.LoadX509KeyPair(certFile, keyFile)
	return cert, false, err
}

// selfSigned returns a certificate for localhost, 127.0.0.1 and ::1, valid
// for 24 hours from now, signed by its own new ECDSA P-256 key, which exists
// only in memory. No browser trusts it: each warns before showing the page.
func selfSigned(now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	template := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "localhost", Organization: []string{"sse chat demo"}},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:             now.Add(-time.Minute), // a little slack for clocks
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
