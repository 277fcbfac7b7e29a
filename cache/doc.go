// Package cache is Lumen's response cache: request keys, entries that answer
// both streaming and non-streaming requests, and the stores that keep them.
package cache
