#include "graph/summary.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <sstream>

#include "graph/attributes.hpp"
#include "nngraph/error.hpp"
#include "plugins/op_instance.hpp"

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

namespace {

// Python's round(): halves go to the even neighbour.
std::int64_t round_half_even(double x) { return static_cast<std::int64_t>(std::nearbyint(x)); }

// The cut rich's Table makes when its columns ask for more than the line holds: the excess is
// taken from every column alike, the first ones rounded first (rich's ratio_reduce).
std::vector<std::int64_t> reduce_evenly(std::int64_t excess, std::vector<std::int64_t> widths) {
    std::int64_t remaining = excess, ratios = static_cast<std::int64_t>(widths.size());
    for (std::int64_t& w : widths) {
        const std::int64_t cut = std::min(w, round_half_even(double(remaining) / double(ratios)));
        w -= cut;
        remaining -= cut;
        --ratios;
    }
    return widths;
}

// rich's word wrap without folding: a line breaks before a word that does not fit; a word longer
// than the width stays whole on its own line and is cut with an ellipsis. Each line fills `width`,
// padded on the side `right_align` says.
std::vector<std::string> wrap_cell(const std::string& text, std::size_t width, bool right_align) {
    std::vector<std::string> lines(1);
    std::int64_t offset = 0;
    for (std::size_t start = 0; start < text.size();) {
        // A word: leading spaces (the first only), non-spaces, the spaces after them.
        std::size_t end = start;
        while (end < text.size() && text[end] == ' ') ++end;
        while (end < text.size() && text[end] != ' ') ++end;
        const std::size_t word_end = end;
        while (end < text.size() && text[end] == ' ') ++end;
        const std::string word = text.substr(start, end - start);
        const auto length = static_cast<std::int64_t>(columns(text.substr(start, word_end - start)));
        const auto room = static_cast<std::int64_t>(width) - offset;
        if (room >= length) {
            offset += static_cast<std::int64_t>(columns(word));
        } else {
            if (start > 0 && (length > static_cast<std::int64_t>(width) || offset > 0)) lines.emplace_back();
            offset = static_cast<std::int64_t>(columns(word));
        }
        lines.back() += word;
        start = end;
    }
    for (std::string& line : lines) {
        line.erase(line.find_last_not_of(' ') + 1);
        if (columns(line) > width) {
            // Keep width - 1 code points, then the ellipsis.
            std::size_t kept = 0, byte = 0;
            while (byte < line.size() && kept < width - 1) {
                ++byte;
                while (byte < line.size() && (static_cast<unsigned char>(line[byte]) & 0xC0) == 0x80) ++byte;
                ++kept;
            }
            line = line.substr(0, byte) + "\u2026";
        }
        line = pad(line, width, right_align);
    }
    return lines;
}

}  // namespace

int summary_line_length(const Graph& graph, int terminal_columns) {
    return std::min(chain_shaped(graph) ? 88 : 108, terminal_columns - 4);
}

std::string summary(const Graph& graph, int line_length) {
    if (line_length == 0) line_length = summary_line_length(graph);
    const bool chain = chain_shaped(graph);
    std::vector<std::vector<std::string>> rows;
    rows.push_back({"Layer (type)", "Output Shape", "Param #"});
    if (!chain) rows.front().push_back("Connected to");
    for (NodeId id : graph.file_order()) {
        const GraphNode& node = graph.node(id);
        // A Sequential model's layers do not include its InputLayer.
        if (node.is_input && graph.spec().sequential) continue;
        std::int64_t params = 0;
        for (WeightId w : node.weights) params += shape_numel(graph.weights()[static_cast<std::size_t>(w)].info.shape);
        rows.push_back({node.name + " (" + node.op + ")", output_shapes(graph, node), with_thousands(params)});
        if (!chain) rows.back().push_back(connected_to(graph, node));
    }

    // Keras's column positions as fractions of the line; each cell has a space either side and the
    // columns a bar between them, all within the line (rich's Table of that width).
    const std::vector<double> positions =
        chain ? std::vector<double>{0.45, 0.80, 1.0} : std::vector<double>{0.3, 0.56, 0.74, 1.0};
    std::vector<std::int64_t> widths;
    std::int64_t current = 0;
    for (double position : positions) {
        const std::int64_t width = static_cast<std::int64_t>(position * line_length) - current;
        if (width < 4) {
            throw InputError(std::string("a summary line of ") + std::to_string(line_length) +
                             " columns is too narrow for Keras's table; give a wider line length");
        }
        widths.push_back(width + 2);
        current += width;
    }
    const std::int64_t room = line_length - static_cast<std::int64_t>(positions.size() + 1);
    const std::int64_t wanted = std::accumulate(widths.begin(), widths.end(), std::int64_t{0});
    if (wanted > room) widths = reduce_evenly(wanted - room, widths);
    const std::size_t column_count = widths.size();

    auto line = [&](const char* left, const char* fill, const char* middle, const char* right) {
        std::string s = left;
        for (std::size_t c = 0; c < column_count; ++c)
            s += repeat(fill, static_cast<std::size_t>(widths[c])) + (c + 1 < column_count ? middle : right);
        return s + "\n";
    };
    auto row = [&](const std::vector<std::string>& cells, const char* bar) {
        std::vector<std::vector<std::string>> wrapped;
        std::size_t height = 1;
        for (std::size_t c = 0; c < column_count; ++c) {
            // Param # is right-aligned, as Keras aligns it.
            wrapped.push_back(
                wrap_cell(cells[c], static_cast<std::size_t>(std::max<std::int64_t>(widths[c] - 2, 1)), c == 2));
            height = std::max(height, wrapped.back().size());
        }
        std::string s;
        for (std::size_t l = 0; l < height; ++l) {
            s += bar;
            for (std::size_t c = 0; c < column_count; ++c) {
                const std::string text =
                    l < wrapped[c].size() ? wrapped[c][l] : std::string(static_cast<std::size_t>(widths[c] - 2), ' ');
                s += " " + text + " " + bar;
            }
            s += "\n";
        }
        return s;
    };

    std::ostringstream out;
    out << "Model: \"" << graph.name() << "\"\n";
    out << line("\u250f", "\u2501", "\u2533", "\u2513") << row(rows.front(), "\u2503")
        << line("\u2521", "\u2501", "\u2547", "\u2529");
    for (std::size_t i = 1; i < rows.size(); ++i) {
        if (i > 1) out << line("\u251c", "\u2500", "\u253c", "\u2524");
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
            // The input's role (query, value, key) where the op names it, else its position.
            std::string role = node.instance ? node.instance->input_name(static_cast<int>(slot)) : std::string();
            if (role.empty() && node.inputs.size() > 1) role = std::to_string(slot);
            if (!role.empty()) out << " [label=" << quoted(role) << "]";
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
