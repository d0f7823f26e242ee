// Where something was written in a model file, for error messages: "model.yaml:12:5".
#pragma once

#include <string>

#include <yaml-cpp/yaml.h>

#include "nngraph/error.hpp"

namespace nngraph {

struct SourceLocation {
    std::string file;
    int line = 0;    // 1-based; 0 when unknown
    int column = 0;  // 1-based

    static SourceLocation of(const std::string& file, const YAML::Node& node) {
        const YAML::Mark mark = node.Mark();
        if (mark.line < 0) return {file, 0, 0};
        return {file, mark.line + 1, mark.column + 1};
    }
    std::string str() const {
        if (line <= 0) return file;
        return file + ":" + std::to_string(line) + ":" + std::to_string(column);
    }
};

// An error in a model file: "<file>:<line>:<col>: node '<node>': <message>".
inline InputError model_error(const SourceLocation& where, const std::string& node, const std::string& message) {
    std::string text = where.str() + ": ";
    if (!node.empty()) text += "node '" + node + "': ";
    return InputError(text + message);
}

}  // namespace nngraph
