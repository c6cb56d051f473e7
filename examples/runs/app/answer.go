package app

import (
	"hash/fnv"
	"math/rand/v2"
	"strings"
)

// words are what the fake model says.
var words = strings.Fields(`the answer depends on what you measure and how often you measure it
a stream of events carries each token to every tab that watches the run and a tab
that reloads gets the whole answer again from its first token then follows the rest
live with no gap and no duplicate while the work itself happens once on one server`)

// answer returns the fake model's answer to prompt, n tokens long: the
// prompt's words, then words drawn with a seed taken from the prompt, so that
// one prompt always gets one answer. A token is a word and its space.
func answer(prompt string, n int) []string {
	h := fnv.New64a()
	h.Write([]byte(prompt))
	rnd := rand.New(rand.NewPCG(h.Sum64(), 20))
	toks := make([]string, 0, n)
	for _, w := range strings.Fields(prompt) {
		if len(toks) == n/4 {
			break
		}
		toks = append(toks, w+" ")
	}
	if len(toks) > 0 {
		toks[len(toks)-1] = strings.TrimSpace(toks[len(toks)-1]) + ": "
	}
	for len(toks) < n {
		toks = append(toks, words[rnd.IntN(len(words))]+" ")
	}
	return toks
}
