#include "graph/attributes.hpp"

#include <algorithm>
#include <sstream>

namespace nngraph {
namespace {

const char* type_name(nng_attr_type type) {
    switch (type) {
        case NNG_ATTR_INT:
            return "an integer";
        case NNG_ATTR_FLOAT:
            return "a number";
        case NNG_ATTR_BOOL:
            return "true or false";
        case NNG_ATTR_STRING:
            return "a string";
        case NNG_ATTR_INTS:
            return "an integer or a list of integers";
        case NNG_ATTR_FLOATS:
            return "a number or a list of numbers";
    }
    return "a value";
}

std::vector<std::string> split_choices(const char* choices) {
    std::vector<std::string> out;
    std::stringstream in(choices ? choices : "");
    for (std::string c; std::getline(in, c, '|');) out.push_back(c);
    return out;
}

// Nested maps name their leaves with dots: {adaptive_span: {max_span: 8}} -> adaptive_span.max_span.
void flatten(const std::string& prefix, const KeyedValue& entry, const std::string& file,
             const std::vector<std::string>& schema_names, std::vector<KeyedValue>& out) {
    const std::string name = prefix.empty() ? entry.key : prefix + "." + entry.key;
    const bool is_group =
        entry.value.IsMap() && std::any_of(schema_names.begin(), schema_names.end(),
                                           [&](const std::string& s) { return s.rfind(name + ".", 0) == 0; });
    if (!is_group) {
        out.push_back({name, entry.value, entry.where});
        return;
    }
    for (const auto& kv : entry.value) {
        const SourceLocation where = SourceLocation::of(file, kv.first);
        flatten(name, {yaml_as<std::string>(kv.first, where, "a key of '" + name + "'"), kv.second, where}, file,
                schema_names, out);
    }
}

std::string render(const YAML::Node& n) {
    YAML::Emitter out;
    out.SetMapFormat(YAML::Flow);
    out.SetSeqFormat(YAML::Flow);
    out << n;
    return out.c_str();
}

}  // namespace

std::string closest_match(const std::string& word, const std::vector<std::string>& candidates) {
    std::string best;
    std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
    for (const std::string& c : candidates) {
        std::vector<std::size_t> row(c.size() + 1);
        for (std::size_t j = 0; j <= c.size(); ++j) row[j] = j;
        for (std::size_t i = 1; i <= word.size(); ++i) {
            std::size_t diagonal = row[0];
            row[0] = i;
            for (std::size_t j = 1; j <= c.size(); ++j) {
                const std::size_t above = row[j];
                row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (word[i - 1] == c[j - 1] ? 0 : 1)});
                diagonal = above;
            }
        }
        if (row[c.size()] < best_distance) {
            best_distance = row[c.size()];
            best = c;
        }
    }
    return best;
}

AttributeValues::AttributeValues(const nng_op_def& op, const std::vector<KeyedValue>& given, const std::string& node,
                                 const SourceLocation& node_where)
    : op_(op), node_where_(node_where) {
    std::vector<std::string> names;
    for (std::int32_t i = 0; i < op.num_attrs; ++i) names.emplace_back(op.attrs[i].name);

    std::vector<KeyedValue> flat;
    for (const KeyedValue& entry : given) flatten("", entry, node_where.file, names, flat);

    std::map<std::string, const KeyedValue*> by_name;
    for (const KeyedValue& entry : flat) {
        if (std::find(names.begin(), names.end(), entry.key) == names.end()) {
            std::string message = "unknown attribute '" + entry.key + "' for " + op.name;
            const std::string suggestion = closest_match(entry.key, names);
            if (!suggestion.empty()) message += " (did you mean '" + suggestion + "'?)";
            message += "; " + std::string(op.name) + " takes: ";
            if (names.empty()) message += "no attributes";
            for (std::size_t i = 0; i < names.size(); ++i) message += (i ? ", " : "") + names[i];
            throw model_error(entry.where, node, message);
        }
        if (!by_name.emplace(entry.key, &entry).second) {
            throw model_error(entry.where, node, "attribute '" + entry.key + "' is given twice");
        }
        where_[entry.key] = entry.where;
        given_text_.emplace_back(entry.key, render(entry.value));
    }

    values_.reserve(names.size());
    for (std::int32_t i = 0; i < op.num_attrs; ++i) {
        const nng_attr_spec& spec = op.attrs[i];
        auto it = by_name.find(spec.name);
        if (it != by_name.end()) {
            values_.push_back(convert(spec, it->second->value, it->second->where, node));
            continue;
        }
        if (spec.flags & NNG_ATTR_REQUIRED) {
            throw model_error(node_where, node,
                              std::string(op.name) + " needs attribute '" + spec.name + "' (" + type_name(spec.type) +
                                  (spec.doc ? ": " + std::string(spec.doc) : std::string()) + ")");
        }
        YAML::Node default_value;
        try {
            default_value = YAML::Load(spec.default_value);
        } catch (const YAML::Exception& e) {
            throw InputError("op " + std::string(op.name) + ": the plugin's default for attribute '" + spec.name +
                             "' is not valid YAML: " + spec.default_value);
        }
        SourceLocation plugin_where{std::string("the default of ") + op.name + "." + spec.name};
        values_.push_back(convert(spec, default_value, plugin_where, node));
    }
}

nng_attr_value AttributeValues::convert(const nng_attr_spec& spec, const YAML::Node& value, const SourceLocation& where,
                                        const std::string& node) {
    nng_attr_value v{};
    v.type = spec.type;
    const bool nullable =
        (spec.flags & NNG_ATTR_NULLABLE) || (spec.default_value && std::string(spec.default_value) == "null");
    if (value.IsNull() || (value.IsScalar() && (value.Scalar() == "None"))) {
        if (!nullable) {
            throw model_error(
                where, node,
                "attribute '" + std::string(spec.name) + "' may not be null; expected " + type_name(spec.type));
        }
        v.is_null = 1;
        return v;
    }
    const std::string what = "attribute '" + std::string(spec.name) + "'";
    auto at = [&](const YAML::Node& n) { return n.Mark().line >= 0 ? SourceLocation::of(where.file, n) : where; };
    auto scalar_error = [&](const YAML::Node& n) {
        return model_error(at(n), node,
                           what + ": expected " + type_name(spec.type) + ", got " +
                               (n.IsScalar() ? "'" + n.Scalar() + "'" : render(n)));
    };
    auto read_int = [&](const YAML::Node& n) -> std::int64_t {
        if (!n.IsScalar()) throw scalar_error(n);
        try {
            return n.as<std::int64_t>();
        } catch (const YAML::Exception&) {
            throw scalar_error(n);
        }
    };
    auto read_float = [&](const YAML::Node& n) -> double {
        if (!n.IsScalar()) throw scalar_error(n);
        try {
            return n.as<double>();
        } catch (const YAML::Exception&) {
            throw scalar_error(n);
        }
    };
    auto items = [&](const YAML::Node& n) {
        std::vector<YAML::Node> out;
        if (!n.IsSequence()) out.push_back(n);
        for (std::size_t i = 0; n.IsSequence() && i < n.size(); ++i) out.push_back(n[i]);
        return out;
    };

    switch (spec.type) {
        case NNG_ATTR_INT:
            v.int_value = read_int(value);
            break;
        case NNG_ATTR_FLOAT:
            v.float_value = read_float(value);
            break;
        case NNG_ATTR_BOOL: {
            if (!value.IsScalar()) throw scalar_error(value);
            const std::string& s = value.Scalar();
            if (s == "true" || s == "True")
                v.int_value = 1;
            else if (s == "false" || s == "False")
                v.int_value = 0;
            else
                throw scalar_error(value);
            break;
        }
        case NNG_ATTR_STRING: {
            if (!value.IsScalar()) throw scalar_error(value);
            const std::vector<std::string> choices = split_choices(spec.choices);
            if (!choices.empty() && std::find(choices.begin(), choices.end(), value.Scalar()) == choices.end()) {
                std::string allowed;
                for (const auto& c : choices) allowed += (allowed.empty() ? "" : ", ") + c;
                throw model_error(at(value), node, what + ": '" + value.Scalar() + "' is not one of " + allowed);
            }
            v.string = strings_.emplace_back(value.Scalar()).c_str();
            break;
        }
        case NNG_ATTR_INTS: {
            // Keras writes None for "whatever the input has" inside shapes (noise_shape: [null, 1, 32]): -1.
            auto& list = int_lists_.emplace_back();
            for (const YAML::Node& item : items(value))
                list.push_back(item.IsNull() || item.Scalar() == "None" ? -1 : read_int(item));
            v.ints = list.data();
            v.count = static_cast<std::int64_t>(list.size());
            break;
        }
        case NNG_ATTR_FLOATS: {
            auto& list = float_lists_.emplace_back();
            for (const YAML::Node& item : items(value)) list.push_back(read_float(item));
            v.floats = list.data();
            v.count = static_cast<std::int64_t>(list.size());
            break;
        }
        default:
            throw model_error(where, node, what + " has a type this engine does not know");
    }
    return v;
}

nng_attrs AttributeValues::view() const {
    return nng_attrs{sizeof(nng_attrs), static_cast<std::int32_t>(values_.size()), op_.attrs, values_.data()};
}

SourceLocation AttributeValues::where_of(const std::string& attribute) const {
    auto it = where_.find(attribute);
    return it == where_.end() ? node_where_ : it->second;
}

}  // namespace nngraph
