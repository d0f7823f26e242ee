#include "graph/summary.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "graph/attributes.hpp"
#include "nngraph/error.hpp"

namespace nngraph {
namespace {

// Display width of UTF-8 text (every code point counts as one column).
std::size_t columns(const std::string& s) {
    std::size_t n = 0;
    for (unsigned char c : s) n += (c & 0xC0) != 0x80;
    return n;
}

std::string repeat(const char* piece, std::size_t n) {
    std::string out;
    for (std::size_t i = 0; i < n; ++i) out += piece;
    return out;
}

std::string pad(const std::string& s, std::size_t width, bool right_align) {
    const std::string fill(width > columns(s) ? width - columns(s) : 0, ' ');
    return right_align ? fill + s : s + fill;
}

std::string output_shapes(const Graph& graph, const GraphNode& node) {
    std::string out;
    for (TensorId t : node.outputs) {
        if (graph.tensor(t).role != NNG_OUTPUT_VISIBLE) continue;
        out += (out.empty() ? "" : ", ") + shape_to_string(graph.tensor(t).info.shape);
    }
    return out;
}

std::string connected_to(const Graph& graph, const GraphNode& node) {
    if (node.is_input) return "-";
    std::string out;
    for (TensorId t : node.inputs) {
        const GraphTensor& tensor = graph.tensor(t);
        const GraphNode& producer = graph.node(tensor.producer);
        int visible_index = 0;
        for (TensorId o : producer.outputs) {
            if (o == t) break;
            if (graph.tensor(o).role == NNG_OUTPUT_VISIBLE) ++visible_index;
        }
        out += (out.empty() ? "" : ", ") + producer.name + "[0][" + std::to_string(visible_index) + "]";
    }
    return out;
}

}  // namespace

std::string with_thousands(std::int64_t value) {
    std::string digits = std::to_string(value < 0 ? -value : value);
    std::string out;
    for (std::size_t i = 0; i < digits.size(); ++i) {
        if (i && (digits.size() - i) % 3 == 0) out += ',';
        out += digits[i];
    }
    return value < 0 ? "-" + out : out;
}

std::string readable_bytes(double bytes) {
    const char* units[] = {"B", "KB", "MB", "GB", "TB", "PB"};
    for (const char* unit : units) {
        if (bytes / 1024.0 < 1.0) {
            char buffer[64];
            std::snprintf(buffer, sizeof buffer, "%.2f %s", bytes, unit);
            return buffer;
        }
        bytes /= 1024.0;
    }
    return "a lot";
}

namespace {

// Keras prints three columns (no "Connected to") when every layer takes the one before it: a
// Sequential model, or a Functional one shaped like a chain.
bool chain_shaped(const Graph& graph) {
    if (graph.spec().sequential) return true;
    if (graph.inputs().size() != 1 || graph.outputs().size() != 1) return false;
    std::vector<int> uses(graph.tensors().size(), 0);
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        if (!node.is_input && node.inputs.size() != 1) return false;
        for (TensorId t : node.inputs) {
            if (++uses[static_cast<std::size_t>(t)] > 1) return false;
        }
    }
    return true;
}

}  // namespace

std::string summary(const Graph& graph) {
    struct Row {
        std::string layer, shape, params, connected;
    };
    const bool chain = chain_shaped(graph);
    const std::size_t column_count = chain ? 3 : 4;
    std::vector<Row> rows;
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        // A Sequential model's layers do not include its InputLayer.
        if (node.is_input && graph.spec().sequential) continue;
        std::int64_t params = 0;
        for (WeightId w : node.weights) params += shape_numel(graph.weights()[static_cast<std::size_t>(w)].info.shape);
        rows.push_back({node.name + " (" + node.op + ")", output_shapes(graph, node), with_thousands(params),
                        connected_to(graph, node)});
    }
    const Row header{"Layer (type)", "Output Shape", "Param #", "Connected to"};
    std::size_t w[4] = {columns(header.layer), columns(header.shape), columns(header.params),
                        columns(header.connected)};
    for (const Row& r : rows) {
        w[0] = std::max(w[0], columns(r.layer));
        w[1] = std::max(w[1], columns(r.shape));
        w[2] = std::max(w[2], columns(r.params));
        w[3] = std::max(w[3], columns(r.connected));
    }
    auto line = [&](const char* left, const char* fill, const char* middle, const char* right) {
        std::string s = left;
        for (std::size_t c = 0; c < column_count; ++c)
            s += repeat(fill, w[c] + 2) + (c + 1 < column_count ? middle : right);
        return s + "\n";
    };
    auto row = [&](const Row& r, const char* bar) {
        std::string s = std::string(bar) + " " + pad(r.layer, w[0], false) + " " + bar + " " +
                        pad(r.shape, w[1], false) + " " + bar + " " + pad(r.params, w[2], true) + " " + bar;
        if (!chain) s += " " + pad(r.connected, w[3], false) + " " + bar;
        return s + "\n";
    };

    std::ostringstream out;
    out << "Model: \"" << graph.name() << "\"\n";
    out << line("\u250f", "\u2501", "\u2533", "\u2513") << row(header, "\u2503")
        << line("\u2521", "\u2501", "\u2547", "\u2529");
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (i) out << line("\u251c", "\u2500", "\u253c", "\u2524");
        out << row(rows[i], "\u2502");
    }
    out << line("\u2514", "\u2500", "\u2534", "\u2518");
    const std::int64_t trainable = graph.parameter_count(true), frozen = graph.parameter_count(false);
    out << " Total params: " << with_thousands(trainable + frozen) << " ("
        << readable_bytes(4.0 * double(trainable + frozen)) << ")\n";
    out << " Trainable params: " << with_thousands(trainable) << " (" << readable_bytes(4.0 * double(trainable))
        << ")\n";
    out << " Non-trainable params: " << with_thousands(frozen) << " (" << readable_bytes(4.0 * double(frozen)) << ")\n";
    return out.str();
}

std::string to_dot(const Graph& graph, const std::string& rankdir, bool attributes) {
    const std::vector<std::string> directions = {"TB", "LR", "BT", "RL"};
    if (std::find(directions.begin(), directions.end(), rankdir) == directions.end())
        throw InputError("rankdir must be TB, LR, BT or RL, not '" + rankdir + "'");
    auto quoted = [](const std::string& s) {
        std::string out = "\"";
        for (char c : s) {
            if (c == '\n') {
                out += "\\n";
                continue;
            }
            if (c == '"' || c == '\\') out += '\\';
            out += c;
        }
        return out + "\"";
    };
    // A long attribute (a list of weights, say) would swamp the picture: cut it.
    auto shortened = [](const std::string& text) {
        constexpr std::size_t kMax = 40;
        return columns(text) <= kMax ? text : text.substr(0, kMax - 3) + "...";
    };
    std::ostringstream out;
    out << "digraph " << quoted(graph.name()) << " {\n  rankdir=" << rankdir
        << ";\n  graph [fontname=\"Helvetica\"];\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n"
        << "  edge [fontname=\"Helvetica\"];\n";
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        std::string label = node.name + " (" + node.op + ")";
        if (attributes && node.attributes) {
            for (const auto& [key, value] : node.attributes->given_text()) label += "\n" + shortened(key + "=" + value);
        }
        if (node.is_input) {
            label += "\n" + output_shapes(graph, node);
        } else {
            std::string inputs;
            for (TensorId t : node.inputs)
                inputs += (inputs.empty() ? "" : ", ") + shape_to_string(graph.tensor(t).info.shape);
            label += "\nin: " + inputs + "\nout: " + output_shapes(graph, node);
        }
        out << "  n" << id << " [label=" << quoted(label) << (node.is_input ? ", shape=ellipse" : "") << "];\n";
    }
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        for (std::size_t slot = 0; slot < node.inputs.size(); ++slot) {
            const GraphTensor& t = graph.tensor(node.inputs[slot]);
            out << "  n" << t.producer << " -> n" << id;
            if (node.inputs.size() > 1) out << " [label=\"" << slot << "\"]";
            out << ";\n";
        }
    }
    // The graph's outputs, each its own node, so the picture says where the model ends.
    for (std::size_t o = 0; o < graph.outputs().size(); ++o) {
        const GraphTensor& t = graph.tensor(graph.outputs()[o]);
        out << "  out" << o << " [label=" << quoted("output: " + t.name + "\n" + shape_to_string(t.info.shape))
            << ", shape=ellipse];\n  n" << t.producer << " -> out" << o << ";\n";
    }
    out << "}\n";
    return out.str();
}

}  // namespace nngraph
