// graph-ops: write the ops of one model's compute graph as a test file that llama.cpp's
// test-backend-ops reads with --test-file (one op per line: op type ne[4] n_params params... n_src
// {type ne[4] nb[4]}... name). Part of llama-wheels (verify/conformance.py); compiled on the runner
// against the installed wheel's libllama, so the graph is the one that wheel builds.
//
// usage: graph-ops MODEL.gguf OUT.txt
// The model loads on the CPU (run with the GPUs hidden). Graphs: a 512-token prompt and one token, with
// flash attention on and off; view-only nodes and KV-cache writes are skipped, identical ops written once.

#include "llama.h"
#include "llama-ext.h"  // llama_graph_reserve (exported by libllama; a staging API of this llama.cpp)
#include "ggml.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

static std::string describe(const ggml_tensor * t) {
    std::ostringstream s;
    s << t->op << ' ' << t->type << ' ';
    for (int i = 0; i < 4; i++) s << t->ne[i] << ' ';
    const int n_params = GGML_MAX_OP_PARAMS / sizeof(int32_t);
    s << n_params << ' ';
    for (int i = 0; i < n_params; i++) s << t->op_params[i] << ' ';
    int n_src = 0;
    while (n_src < GGML_MAX_SRC && t->src[n_src] != nullptr) n_src++;
    s << n_src << ' ';
    for (int k = 0; k < n_src; k++) {
        const ggml_tensor * src = t->src[k];
        s << src->type << ' ';
        for (int i = 0; i < 4; i++) s << src->ne[i] << ' ';
        for (int i = 0; i < 4; i++) s << src->nb[i] << ' ';
    }
    return s.str();
}

static void collect(ggml_cgraph * gf, std::set<std::string> & seen, std::ofstream & out) {
    for (int i = 0; i < ggml_graph_n_nodes(gf); i++) {
        const ggml_tensor * node = ggml_graph_node(gf, i);
        switch (node->op) {
            case GGML_OP_NONE: case GGML_OP_VIEW: case GGML_OP_RESHAPE: case GGML_OP_PERMUTE: case GGML_OP_TRANSPOSE:
                continue;
            // The KV-cache writes: as a generic test case their row indices are random, so rows of the
            // destination stay unwritten and both backends read NaN there (seen on the CPU machine).
            // test-backend-ops' own SET_ROWS cases (the default ops) test them with valid indices.
            case GGML_OP_SET_ROWS:
                continue;
            default:
                break;
        }
        const std::string key = describe(node);
        if (!seen.insert(key).second) continue;
        std::string name = node->name[0] ? node->name : "-";
        for (char & c : name) if (c == ' ') c = '_';
        out << key << name << '\n';
    }
}

int main(int argc, char ** argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL.gguf OUT.txt\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (model == nullptr) {
        fprintf(stderr, "graph-ops: cannot load %s\n", argv[1]);
        return 1;
    }
    std::ofstream out(argv[2]);
    if (!out) {
        fprintf(stderr, "graph-ops: cannot write %s\n", argv[2]);
        return 1;
    }
    std::set<std::string> seen;
    for (llama_flash_attn_type fa : {LLAMA_FLASH_ATTN_TYPE_ENABLED, LLAMA_FLASH_ATTN_TYPE_DISABLED}) {
        llama_context_params cp = llama_context_default_params();
        cp.n_ctx = 512;
        cp.n_batch = 512;
        cp.n_ubatch = 512;
        cp.n_seq_max = 1;
        cp.flash_attn_type = fa;
        llama_context * ctx = llama_init_from_model(model, cp);
        if (ctx == nullptr) {
            fprintf(stderr, "graph-ops: cannot create a context (flash attention %d)\n", (int) fa);
            return 1;
        }
        const uint32_t shapes[2][3] = {{512, 1, 512}, {1, 1, 1}};  // prompt, then one token
        for (const auto & s : shapes) {
            ggml_cgraph * gf = llama_graph_reserve(ctx, s[0], s[1], s[2]);
            if (gf == nullptr) {
                fprintf(stderr, "graph-ops: llama_graph_reserve(%u) failed\n", s[0]);
                return 1;
            }
            collect(gf, seen, out);
        }
        llama_free(ctx);
    }
    llama_model_free(model);
    printf("graph-ops: %zu distinct ops written to %s\n", seen.size(), argv[2]);
    return 0;
}
