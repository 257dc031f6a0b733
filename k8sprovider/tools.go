//go:build tools

// Package tools pins the provider packages that upstream's cmd/pulumi-resource-kubernetes imports, so that
// `go mod tidy` keeps their whole dependency graph (and that of upstream's schema generator, generate.go).
// The main package itself is upstream's: scripts/build-k8s-provider.sh copies it out of the module cache,
// generates its embedded schema as upstream's Makefile does, and builds it inside this module.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
	_ "github.com/pulumi/pulumi/pkg/v3/codegen/schema"
)
