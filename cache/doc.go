// Package cache is Lumen's response cache: repeated requests (evals, client
// retries, agent loops, popular questions) are answered from memory without
// an upstream call, and identical requests in flight share one call.
//
// # Per request
//
// The server computes a Key (NewKey: model group, scope and the canonical
// request body), reads the request's Directive (ParseDirective: the
// Cache-Control header and LiteLLM's "cache" body field), and asks
// Cache.Lookup. On a hit it answers from the Entry: Entry.Body for a
// non-streaming request, Entry.Stream for a streaming one, either way with a
// fresh id and created. On a miss it calls Cache.Do or Cache.Stream with the
// upstream call; concurrent identical misses share that call (Group), and a
// complete answer is stored on the way.
//
// # What is stored
//
// Only complete, successful answers: never an error, a stream that broke or
// ended without every choice finishing, or a choice that finished with a
// reason other than stop, length, tool_calls or function_call (so never
// content_filter). An Entry recorded from a stream keeps its chunks, so a
// replay has the same chunk structure, plus the equivalent chat.completion
// body; one recorded from a body keeps it plus a synthesized chunk
// sequence. Chunks are stored as deltas against the previous chunk, so a
// streamed answer costs about twice its text, not fifty times.
//
// # Key and scope
//
// The key covers every top-level request field except those that cannot
// change the answer (stream, stream_options, user, metadata, store, and the
// cache and lumen control fields); "model" is replaced by the model group.
// Key order, whitespace, string escapes and number spelling do not matter.
//
// Answers are shared by all callers of a model group by default; Scope
// gives each virtual key its own namespace when cache.scope is "key" or the
// key is tagged "cache_scope=key", and gives a tenant one when the key is
// tagged "tenant=<name>". A "namespace" in the request's cache field narrows
// further. A caller's API key is never part of the key otherwise.
//
// # Stores
//
// Local is the default: in-process, bounded by bytes, TTL per entry. Redis
// shares entries between Lumen instances; if Redis is down, requests are
// served uncached and the failure is counted and logged once per interval.
// Semantic (opt-in) wraps either.
//
// # Semantic cache: the risk of false hits
//
// Semantic serves the answer to a *different* question whose last user
// message embeds close to this one (cosine similarity at least
// similarity_threshold, default 0.95). Embeddings capture topic better than
// meaning: "Is it safe to take ibuprofen with alcohol?" and "Is it safe to
// take ibuprofen without alcohol?", or two requests differing only in a
// number, a name or a negation, can score above 0.95. Such a false hit
// returns a fluent, confident, wrong answer with nothing to tell the client
// it came from another prompt (only the x-lumen-cache header). To limit the
// damage, a semantic hit requires everything but the last user message to
// match exactly (scope, model group, system prompt, earlier turns, tools and
// parameters), and non-text prompts are only matched exactly. Enable it only
// for traffic where a near-duplicate answer is acceptable (FAQ-style
// questions), keep the threshold high, and keep cache.scope per tenant.
// Every semantic miss also costs an embedding call.
package cache
