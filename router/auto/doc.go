// Package auto is the scorer and decision logic behind model "auto": it reads
// a prompt, predicts its difficulty and domain and each candidate model's
// probability of answering it well, and picks the cheapest candidate that
// clears the quality floor within the route's price and latency limits.
//
// # Scorer
//
// Features (Extract) are hashed word unigrams and bigrams, in-word character
// 4-grams, the words of the last 400 bytes (the question of a few-shot
// prompt) and of the system prompt, plus 32 dense features: length, turns,
// script (CJK, Cyrillic, Arabic, Indic), code/math/LaTeX/reasoning cues,
// multiple-choice options, "Answer:" endings, negated questions. Long prompts
// are read at the head and tail only, so scoring time is bounded.
//
// One linear layer over the features gives, per prompt, a difficulty b(x),
// a K-dimensional embedding z(x) and D domain logits (softmax p(d|x)). Each
// model m has per-domain ability θ and discrimination a, and a residual
// weight vector u:
//
//	P(success | m, x) = σ( Σ_d p(d|x)·a_md·(θ_md − b(x)) + u_m·z(x) )
//
// The IRT part (θ, a, b) is what makes the decision sensible on hard
// prompts: the gain of a strong model over a weak one is largest at middle
// difficulty and vanishes where both fail. The low-rank residual u_m·z(x)
// lets models rank prompts differently, which is what a router needs: the
// expected gain P_strong − P_weak, not only the subject.
//
// The weights also carry a task table (TaskTable) for prompts that belong
// to a task seen in training: a softmax regression over a 4096-bucket count
// sketch of the prompt's hashed features recognises the task, and each
// learned model's logit moves towards its success rate on the recognised
// tasks (π-weighted), by w(s) = WMax·σ(Slope·(s − S0)) of the classifier's
// confidence s. The shape of w is fitted per source on 5 inner splits of
// the training rows, to the two-model ranking (APGR) of known plus unseen
// tasks, and may not lower the unseen-task ranking of any split. Within a
// known task the prior is what ranks best (the scorer's own within-task
// ranking adds nothing there, EVAL.md); on an unfamiliar prompt the
// classifier is unsure and the scorer keeps its own prediction. The sketch
// is sparse and the task scores run in an AVX2 kernel, so this costs a few
// microseconds and no allocation. (Training flag --task-match centroid
// gives the earlier nearest-centroid variant; --task-dims -1 none.)
//
// Weights are trained offline by router/auto/training (go run
// ./router/auto/train) and embedded as float16 (weights.bin). Models named in
// the training data are learned under their exact names; well-known models
// (PublicModels) are placed between two learned anchor models by a public
// MMLU figure, and config can override any model's quality or per-domain
// abilities (Scorer.With).
//
// # Decisions
//
// Decide is a pure function over candidates with predicted quality, prices
// and observed latency: modes floor (cheapest that clears the floor), best,
// fast and smart (Bandit.Decide: Thompson sampling per domain and candidate
// over observed outcomes, never below the floor). When nothing qualifies it
// returns a *NoCandidateError naming the constraint that excluded each
// candidate, and the best-effort option.
package auto
