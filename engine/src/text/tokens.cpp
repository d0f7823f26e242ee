#include "text/tokens.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf16.h>
#include <unicode/utf8.h>

#include "nngraph/error.hpp"

namespace nngraph {

bool is_python_word_char(char32_t c) {
    const auto code = static_cast<UChar32>(c);
    if (c == U'_' || (U_GET_GC_MASK(code) & U_GC_L_MASK) != 0) return true;
    return u_getIntPropertyValue(code, UCHAR_NUMERIC_TYPE) != U_NT_NONE;
}

bool is_python_space(char32_t c) {
    const auto code = static_cast<UChar32>(c);
    if (u_charType(code) == U_SPACE_SEPARATOR) return true;
    const UCharDirection direction = u_charDirection(code);
    return direction == U_WHITE_SPACE_NEUTRAL || direction == U_BLOCK_SEPARATOR || direction == U_SEGMENT_SEPARATOR;
}

namespace {

std::string hex_byte(uint8_t byte) {
    constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[byte >> 4], kDigits[byte & 15]};
}

icu::UnicodeString from_utf8(std::string_view text) {
    icu::UnicodeString out;
    const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
    const auto length = static_cast<int32_t>(text.size());
    for (int32_t i = 0; i < length;) {
        const int32_t at = i;
        UChar32 c = 0;
        U8_NEXT(bytes, i, length, c);
        if (c < 0)
            throw InputError("the text is not UTF-8: bad byte 0x" + hex_byte(bytes[at]) + " at offset " +
                             std::to_string(at));
        out.append(c);
    }
    return out;
}

// The character as it enters the regular expression: U+0000 for one that is removed.
UChar32 replaced(UChar32 c) {
    switch (c) {
        case 0x00A0:
        case 0x202F:
        case 0x2009:
            return U' ';
        case 0x200B:
        case 0x00AD:
            return 0;
        case 0x2019:
            return U'\'';
        default:
            return c;
    }
}

void append_utf8(std::string& out, UChar32 c) {
    char bytes[4];
    int32_t length = 0;
    U8_APPEND_UNSAFE(bytes, length, c);
    out.append(bytes, static_cast<std::size_t>(length));
}

}  // namespace

std::vector<std::string> translation_tokens(std::string_view text) {
    if (text.size() > static_cast<std::size_t>(INT32_MAX)) throw InputError("the text is longer than 2 GiB");
    UErrorCode status = U_ZERO_ERROR;
    const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
    icu::UnicodeString normal = nfc->normalize(from_utf8(text), status);
    if (U_FAILURE(status)) throw std::runtime_error(std::string("ICU cannot normalise text: ") + u_errorName(status));
    normal.toLower(icu::Locale::getRoot());

    std::vector<std::string> tokens;
    std::string word;
    const auto end_word = [&] {
        if (!word.empty()) tokens.push_back(std::move(word));
        word.clear();
    };
    for (int32_t i = 0; i < normal.length(); i = normal.moveIndex32(i, 1)) {
        const UChar32 c = replaced(normal.char32At(i));
        if (c == 0) continue;
        if (is_python_word_char(static_cast<char32_t>(c))) {
            append_utf8(word, c);
            continue;
        }
        end_word();
        if (!is_python_space(static_cast<char32_t>(c))) {
            std::string symbol;
            append_utf8(symbol, c);
            tokens.push_back(std::move(symbol));
        }
    }
    end_word();
    return tokens;
}

}  // namespace nngraph
