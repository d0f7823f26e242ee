// A node's attributes checked against its op's schema: types, choices, required ones, defaults.
// The result owns every value and hands the plugin a C view of them, once, at `create`.
#pragma once

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "graph/model_file.hpp"
#include "nngraph/plugin.h"

namespace nngraph {

class AttributeValues {
public:
    // Throws a model_error naming the file position, node and attribute for an unknown attribute
    // (with a suggestion), a value of the wrong type, a string outside the allowed choices, or a
    // missing required one.
    AttributeValues(const nng_op_def& op, const std::vector<KeyedValue>& given, const std::string& node,
                    const SourceLocation& node_where);

    AttributeValues(const AttributeValues&) = delete;
    AttributeValues& operator=(const AttributeValues&) = delete;

    nng_attrs view() const;
    // Where the model file set `attribute`, or the node's position when it was left at its default.
    SourceLocation where_of(const std::string& attribute) const;
    // "units=1, activation=sigmoid": the attributes given in the file, for summaries and dot.
    const std::vector<std::pair<std::string, std::string>>& given_text() const { return given_text_; }

private:
    nng_attr_value convert(const nng_attr_spec& spec, const YAML::Node& value, const SourceLocation& where,
                           const std::string& node);

    const nng_op_def& op_;
    std::vector<nng_attr_value> values_;
    std::deque<std::string> strings_;
    std::deque<std::vector<std::int64_t>> int_lists_;
    std::deque<std::vector<double>> float_lists_;
    std::map<std::string, SourceLocation> where_;
    std::vector<std::pair<std::string, std::string>> given_text_;
    SourceLocation node_where_;
};

// The closest of `candidates` to `word` by edit distance, or "" when none is close.
std::string closest_match(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace nngraph
