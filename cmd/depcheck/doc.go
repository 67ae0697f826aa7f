// Command depcheck enforces the package import rules of docs/architecture.md (`make depcheck`).
package main
