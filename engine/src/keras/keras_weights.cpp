#include "keras/keras_weights.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "nngraph/error.hpp"

namespace nngraph::keras {
namespace {

static_assert(std::is_same_v<hid_t, std::int64_t>, "Hdf5WeightsFile keeps the file's hid_t as std::int64_t");

// An HDF5 identifier closed by its own close function.
class Handle {
public:
    Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
    Handle(const Handle&) = delete;
    Handle& operator=(const Handle&) = delete;
    ~Handle() {
        if (id_ >= 0) close_(id_);
    }
    hid_t get() const { return id_; }
    bool valid() const { return id_ >= 0; }

private:
    hid_t id_;
    herr_t (*close_)(hid_t);
};

// Whether every component of `path` exists as a link, checked one by one as H5Lexists requires.
bool path_exists(hid_t file, const std::string& path) {
    std::string prefix;
    std::size_t start = 0;
    while (start <= path.size()) {
        const std::size_t slash = std::min(path.find('/', start), path.size());
        const std::string part = path.substr(start, slash - start);
        if (part.empty() || part == "." || part == "..") return false;
        prefix += (prefix.empty() ? "" : "/") + part;
        if (H5Lexists(file, prefix.c_str(), H5P_DEFAULT) <= 0) return false;
        start = slash + 1;
    }
    return true;
}

bool is_group(hid_t file, const std::string& path) {
    if (!path_exists(file, path)) return false;
    H5O_info_t info;
    if (H5Oget_info_by_name(file, path.c_str(), &info, H5P_DEFAULT) < 0) return false;
    return info.type == H5O_TYPE_GROUP;
}

std::string vars_path(const std::string& path) { return path.empty() ? "vars" : path + "/vars"; }

}  // namespace

// The library prints its error stack to stderr by default; while an Hdf5WeightsFile lives its errors
// become exceptions instead, and the handler the program had comes back afterwards.
struct Hdf5WeightsFile::ErrorReporting {
    H5E_auto2_t handler = nullptr;
    void* data = nullptr;
    ErrorReporting() {
        H5Eget_auto2(H5E_DEFAULT, &handler, &data);
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    }
    ~ErrorReporting() { H5Eset_auto2(H5E_DEFAULT, handler, data); }
};

Hdf5WeightsFile::Hdf5WeightsFile(const std::string& image, std::string label, const WeightsLimits& limits)
    : error_reporting_(std::make_unique<ErrorReporting>()), label_(std::move(label)), limits_(limits) {
    if (image.empty()) throw InputError(label_ + " is empty: expected an HDF5 file of the model's weights");
    Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    // The core driver serves the file from memory; the image is copied in, not written to disk.
    if (!access.valid() || H5Pset_fapl_core(access.get(), 1 << 16, 0) < 0 ||
        H5Pset_file_image(access.get(), const_cast<char*>(image.data()), image.size()) < 0) {
        throw RunError("the HDF5 library could not set up reading " + label_ + " from memory");
    }
    file_ = H5Fopen("model.weights.h5", H5F_ACC_RDONLY, access.get());
    if (file_ < 0) throw InputError(label_ + " is not an HDF5 file (expected Keras's model.weights.h5)");
}

Hdf5WeightsFile::~Hdf5WeightsFile() {
    if (file_ >= 0) H5Fclose(file_);
}

bool Hdf5WeightsFile::has_group(const std::string& path) const { return is_group(file_, path); }

std::vector<Tensor> Hdf5WeightsFile::variables(const std::string& path) const {
    std::vector<Tensor> result;
    const std::string group = vars_path(path);
    if (!is_group(file_, group)) return result;
    for (int i = 0;; ++i) {
        const std::string name = group + "/" + std::to_string(i);
        if (!path_exists(file_, name)) break;
        if (i >= limits_.variables) {
            throw InputError(label_ + ": '" + group + "' holds more than " + std::to_string(limits_.variables) +
                             " variables");
        }
        const std::string where = label_ + ": variable '" + name + "'";
        Handle dataset(H5Dopen2(file_, name.c_str(), H5P_DEFAULT), H5Dclose);
        if (!dataset.valid()) throw InputError(where + " is not a dataset");
        Handle space(H5Dget_space(dataset.get()), H5Sclose);
        Handle type(H5Dget_type(dataset.get()), H5Tclose);
        if (!space.valid() || !type.valid()) throw InputError(where + " has no readable shape or type");
        const H5T_class_t type_class = H5Tget_class(type.get());
        // A forged element size would make the library's conversion buffer as large as it says.
        const std::size_t element_bytes = H5Tget_size(type.get());
        if ((type_class != H5T_FLOAT && type_class != H5T_INTEGER) || element_bytes < 1 || element_bytes > 8) {
            throw InputError(where + " holds neither floats nor integers of 1 to 8 bytes");
        }
        const int rank = H5Sget_simple_extent_ndims(space.get());
        if (rank < 0 || rank > limits_.rank) {
            throw InputError(where + " has rank " + std::to_string(rank) + "; expected 0 to " +
                             std::to_string(limits_.rank));
        }
        std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
        if (H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0) {
            throw InputError(where + " has an unreadable shape");
        }
        Shape shape;
        std::int64_t elements = 1;
        for (const hsize_t d : dims) {
            if (d > static_cast<hsize_t>(limits_.elements) ||
                (d > 0 && static_cast<std::int64_t>(d) > limits_.elements / elements)) {
                throw InputError(where + " has more than " + std::to_string(limits_.elements) + " elements");
            }
            elements *= std::max<std::int64_t>(static_cast<std::int64_t>(d), 1);
            shape.push_back(static_cast<std::int64_t>(d));
        }
        Tensor values(DType::F32, shape);
        // The library converts float64 and integer variables to float32 as it reads.
        if (values.numel() > 0 &&
            H5Dread(dataset.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.raw()) < 0) {
            throw InputError(where + " could not be read as float32 (damaged, or of a type HDF5 cannot convert)");
        }
        result.push_back(std::move(values));
    }
    return result;
}

std::optional<std::string> Hdf5WeightsFile::stored_name(const std::string& path) const {
    const std::string group = vars_path(path);
    if (!is_group(file_, group) || H5Aexists_by_name(file_, group.c_str(), "name", H5P_DEFAULT) <= 0) {
        return std::nullopt;
    }
    Handle attribute(H5Aopen_by_name(file_, group.c_str(), "name", H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attribute.valid()) return std::nullopt;
    Handle type(H5Aget_type(attribute.get()), H5Tclose);
    Handle space(H5Aget_space(attribute.get()), H5Sclose);
    if (!type.valid() || !space.valid() || H5Tget_class(type.get()) != H5T_STRING ||
        H5Sget_simple_extent_npoints(space.get()) != 1) {
        return std::nullopt;
    }
    constexpr std::size_t kMaxName = 4096;
    Handle memory_type(H5Tcopy(H5T_C_S1), H5Tclose);
    if (H5Tis_variable_str(type.get()) > 0) {
        H5Tset_size(memory_type.get(), H5T_VARIABLE);
        H5Tset_cset(memory_type.get(), H5Tget_cset(type.get()));
        char* text = nullptr;
        if (H5Aread(attribute.get(), memory_type.get(), &text) < 0 || !text) return std::nullopt;
        std::string name(text, ::strnlen(text, kMaxName));
        H5free_memory(text);
        return name;
    }
    const std::size_t size = H5Tget_size(type.get());
    if (size == 0 || size > kMaxName) return std::nullopt;
    std::string name(size, '\0');
    H5Tset_size(memory_type.get(), size);
    if (H5Aread(attribute.get(), memory_type.get(), name.data()) < 0) return std::nullopt;
    name.resize(::strnlen(name.c_str(), size));
    return name;
}

std::int64_t Hdf5WeightsFile::count_variables(const std::string& path) const {
    if (!is_group(file_, path)) return 0;
    std::int64_t count = 0;
    H5Ovisit_by_name(
        file_, path.c_str(), H5_INDEX_NAME, H5_ITER_NATIVE,
        [](hid_t, const char*, const H5O_info_t* info, void* data) -> herr_t {
            if (info->type == H5O_TYPE_DATASET) ++*static_cast<std::int64_t*>(data);
            return 0;
        },
        &count, H5P_DEFAULT);
    return count;
}

}  // namespace nngraph::keras
