// GRACE co-processor C++ harness: the Coprocessor's Verilator model on a memory in C++.
//
// Usage: coproc_harness MEMORY.bin OUT.bin RESULT.json MEMORY_WORDS IMAGE_BYTES LATENCY
//                       STALLS SEED WATCHDOG BASE:WORDS [BASE:WORDS ...]
// The memory (MEMORY_WORDS bus words of 8 bytes: as large as a board's DRAM costs
// only host RAM) answers the Wishbone B4 pipelined port as rtl/coproc/sim_memory.py
// does: each request taken on a cycle with cyc & stb & ~stall is read or written
// then and answered LATENCY cycles later, in order; stall is raised when a 16-bit
// Galois LFSR's low byte is below STALLS. The host's part as sim/coproc_tb.py:
// registers, start, wait for irq; then OUT.bin (IMAGE_BYTES of the memory) and
// RESULT.json (each program's fault, cycles and counters). No Python runs meanwhile.
// Progress: a line "cycles N" on stdout every 2^22 cycles.
// (Verilator spells the double underscore of `ctrl__cyc` as `___05F`.)
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "Vgrace_coproc.h"
#include "verilated.h"

namespace {

// defs/coproc.py Register
constexpr int kControl = 0, kStatus = 1, kFaultIndex = 2, kProgramBase = 3, kProgramWords = 4,
              kImageBytes = 5, kWatchdog = 6, kCycles = 8, kCounters = 16;

struct Answer {
    uint64_t due, data;
    bool error;
};

Vgrace_coproc* top;
std::vector<uint64_t> memory;
std::deque<Answer> answers;
uint64_t cycles = 0;
unsigned latency = 1, stall_threshold = 0;
uint16_t lfsr = 1;

void tick() {
    const bool stall = (lfsr & 0xff) < stall_threshold;
    top->mem___05Fstall = stall;
    top->mem___05Fack = 0;
    top->mem___05Ferr = 0;
    if (!answers.empty() && answers.front().due == cycles) {
        top->mem___05Fack = !answers.front().error;
        top->mem___05Ferr = answers.front().error;
        top->mem___05Fdat_r = answers.front().data;
        answers.pop_front();
    }
    top->clk = 0;
    top->eval();
    if (top->mem___05Fcyc && top->mem___05Fstb && !stall) {
        const uint64_t addr = top->mem___05Fadr;
        Answer answer{cycles + latency, 0, addr >= memory.size()};
        if (!answer.error) {
            uint64_t& word = memory[addr];
            answer.data = word;
            if (top->mem___05Fwe) {
                for (int b = 0; b < 8; ++b) {
                    if (top->mem___05Fsel >> b & 1) {
                        const uint64_t mask = uint64_t(0xff) << (8 * b);
                        word = (word & ~mask) | (top->mem___05Fdat_w & mask);
                    }
                }
            }
        }
        answers.push_back(answer);
    }
    top->clk = 1;
    top->eval();
    lfsr = (lfsr >> 1) ^ ((lfsr & 1) ? 0xB400 : 0);
    if ((++cycles & ((1u << 22) - 1)) == 0) {
        std::printf("cycles %llu\n", static_cast<unsigned long long>(cycles));
        std::fflush(stdout);
    }
}

uint32_t access(int reg, uint32_t value, bool write) {
    top->ctrl___05Fcyc = 1;
    top->ctrl___05Fstb = 1;
    top->ctrl___05Fwe = write;
    top->ctrl___05Fadr = reg;
    top->ctrl___05Fdat_w = value;
    do {
        tick();
    } while (!top->ctrl___05Fack);
    uint32_t data = top->ctrl___05Fdat_r;
    top->ctrl___05Fcyc = 0;
    top->ctrl___05Fstb = 0;
    return data;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 11) {
        std::fprintf(stderr, "usage: %s MEMORY.bin OUT.bin RESULT.json MEMORY_WORDS IMAGE_BYTES "
                             "LATENCY STALLS SEED WATCHDOG BASE:WORDS...\n", argv[0]);
        return 2;
    }
    const char* memory_path = argv[1];
    const char* out_path = argv[2];
    const char* result_path = argv[3];
    memory.assign(std::strtoull(argv[4], nullptr, 0), 0);
    const uint64_t image_bytes = std::strtoull(argv[5], nullptr, 0);
    latency = std::max(1, std::atoi(argv[6]));
    stall_threshold = std::atoi(argv[7]);
    lfsr = std::atoi(argv[8]) ? std::atoi(argv[8]) : 1;
    const char* env = std::getenv("GRACE_COUNTERS");
    const int counters = env ? std::atoi(env) : 20;

    FILE* in = std::fopen(memory_path, "rb");
    if (!in) { std::perror(memory_path); return 2; }
    const size_t loaded = std::fread(memory.data(), 8, memory.size(), in);
    std::fclose(in);
    std::printf("loaded %zu words\n", loaded);

    auto context = std::make_unique<VerilatedContext>();
    top = new Vgrace_coproc{context.get()};
    top->rst = 1;
    top->ctrl___05Fcyc = 0;
    top->ctrl___05Fstb = 0;
    tick();
    tick();
    top->rst = 0;
    access(kImageBytes, static_cast<uint32_t>(image_bytes), true);
    access(kWatchdog, std::strtoul(argv[9], nullptr, 0), true);

    std::string json = "[";
    auto start = std::chrono::steady_clock::now();
    for (int a = 10; a < argc; ++a) {
        unsigned long base = 0, words = 0;
        std::sscanf(argv[a], "%lu:%lu", &base, &words);
        access(kProgramBase, base, true);
        access(kProgramWords, words, true);
        access(kControl, 1, true);
        do { tick(); } while (!top->irq);
        const uint32_t status = access(kStatus, 0, false);
        const uint64_t run =
            access(kCycles, 0, false) | (uint64_t(access(kCycles + 1, 0, false)) << 32);
        json += (a > 10 ? ", " : "") + std::string("{\"fault\": ") +
                std::to_string((status >> 8) & 0xff) +
                ", \"fault_index\": " + std::to_string(access(kFaultIndex, 0, false)) +
                ", \"cycles\": " + std::to_string(run) + ", \"counters\": [";
        for (int i = 0; i < counters; ++i)
            json += (i ? ", " : "") + std::to_string(access(kCounters + i, 0, false));
        json += "]}";
        if ((status >> 8) & 0xff) break;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    json += "]";

    FILE* out = std::fopen(out_path, "wb");
    std::fwrite(memory.data(), 1, image_bytes, out);
    std::fclose(out);
    FILE* result = std::fopen(result_path, "w");
    std::fprintf(result, "{\"programs\": %s, \"seconds\": %.3f, \"total_cycles\": %llu}\n",
                 json.c_str(), seconds, static_cast<unsigned long long>(cycles));
    std::fclose(result);
    top->final();
    delete top;
    return 0;
}
