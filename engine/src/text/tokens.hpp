// The tokens of translation data, for training and for scoring alike (SPEC section 7): the text in
// Unicode NFC, lower-cased, U+00A0, U+202F and U+2009 made spaces, U+200B and U+00AD removed, U+2019
// made an apostrophe, then the matches of Python's `\w+|[^\w\s]`.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nngraph {

// Python's `re` classes for str patterns, which the reference tokenizer uses; ICU's own regex \w
// differs (it takes combining marks and connector punctuation).
// \w: a letter (general category L*), a character with a numeric type (decimal, digit or numeric), or '_'.
bool is_python_word_char(char32_t c);
// \s: general category Zs, or bidirectional class WS, B or S.
bool is_python_space(char32_t c);

// The tokens of UTF-8 `text`, each as UTF-8. Raises InputError (saying where in the text) for
// bytes that are not UTF-8.
std::vector<std::string> translation_tokens(std::string_view text);

}  // namespace nngraph
