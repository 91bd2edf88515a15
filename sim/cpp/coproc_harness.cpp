// GRACE co-processor C++ harness: SimTop's Verilator model, no Python per cycle.
// (Verilator spells the double underscore of `ctrl__cyc` as `___05F`.)
//
// Usage: coproc_harness MEMORY.bin OUT.bin RESULT.json IMAGE_BYTES LATENCY STALLS SEED
//                       WATCHDOG BASE:WORDS [BASE:WORDS ...]
// Fills the simulated memory from MEMORY.bin through the backdoor, runs each
// program (base, words) to done, writes the memory (IMAGE_BYTES of it) to
// OUT.bin and each program's fault, cycles and counters to RESULT.json.
// Progress: a line "cycles N" on stdout every 2^22 cycles.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "Vgrace_coproc.h"
#include "verilated.h"

namespace {

// defs/coproc.py Register
constexpr int kControl = 0, kStatus = 1, kFaultIndex = 2, kProgramBase = 3, kProgramWords = 4,
              kImageBytes = 5, kWatchdog = 6, kCycles = 8, kCounters = 16;

Vgrace_coproc* top;
uint64_t cycles = 0;

void tick() {
    top->clk = 0;
    top->eval();
    top->clk = 1;
    top->eval();
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
    if (argc < 10) {
        std::fprintf(stderr, "usage: %s MEMORY.bin OUT.bin RESULT.json IMAGE_BYTES LATENCY "
                             "STALLS SEED WATCHDOG BASE:WORDS...\n", argv[0]);
        return 2;
    }
    const char* memory_path = argv[1];
    const char* out_path = argv[2];
    const char* result_path = argv[3];
    const uint64_t image_bytes = std::strtoull(argv[4], nullptr, 0);
    const int counters = std::atoi(std::getenv("GRACE_COUNTERS") ? std::getenv("GRACE_COUNTERS") : "20");
    auto context = std::make_unique<VerilatedContext>();
    top = new Vgrace_coproc{context.get()};
    top->rst = 1;
    top->ctrl___05Fcyc = 0;
    top->ctrl___05Fstb = 0;
    top->backdoor_we = 0;
    top->latency = std::atoi(argv[5]);
    top->stall_threshold = std::atoi(argv[6]);
    top->lfsr_seed = std::atoi(argv[7]);
    top->error_from = 1u << 29;  // past every word address: no request answers err
    tick();
    tick();
    top->rst = 0;

    FILE* in = std::fopen(memory_path, "rb");
    if (!in) { std::perror(memory_path); return 2; }
    uint64_t word = 0;
    uint32_t index = 0;
    while (std::fread(&word, 8, 1, in) == 1) {  // bus words of 8 bytes, little-endian
        top->backdoor_addr = index++;
        top->backdoor_wdata = word;
        top->backdoor_we = 1;
        tick();
    }
    std::fclose(in);
    top->backdoor_we = 0;
    access(kImageBytes, static_cast<uint32_t>(image_bytes), true);
    access(kWatchdog, std::strtoul(argv[8], nullptr, 0), true);

    std::string json = "[";
    auto start = std::chrono::steady_clock::now();
    for (int a = 9; a < argc; ++a) {
        unsigned long base = 0, words = 0;
        std::sscanf(argv[a], "%lu:%lu", &base, &words);
        access(kProgramBase, base, true);
        access(kProgramWords, words, true);
        access(kControl, 1, true);
        do { tick(); } while (!top->irq);
        uint32_t status = access(kStatus, 0, false);
        uint64_t run = access(kCycles, 0, false) | (uint64_t(access(kCycles + 1, 0, false)) << 32);
        json += (a > 9 ? ", " : "") + std::string("{\"fault\": ") + std::to_string((status >> 8) & 0xff) +
                ", \"fault_index\": " + std::to_string(access(kFaultIndex, 0, false)) +
                ", \"cycles\": " + std::to_string(run) + ", \"counters\": [";
        for (int i = 0; i < counters; ++i)
            json += (i ? ", " : "") + std::to_string(access(kCounters + i, 0, false));
        json += "]}";
        if ((status >> 8) & 0xff) break;
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    json += "]";

    FILE* out = std::fopen(out_path, "wb");
    for (uint32_t i = 0; i < (image_bytes + 7) / 8; ++i) {
        top->backdoor_addr = i;
        tick();
        uint64_t value = top->backdoor_rdata;
        std::fwrite(&value, 8, 1, out);
    }
    std::fclose(out);
    FILE* result = std::fopen(result_path, "w");
    std::fprintf(result, "{\"programs\": %s, \"seconds\": %.3f, \"total_cycles\": %llu}\n",
                 json.c_str(), seconds, static_cast<unsigned long long>(cycles));
    std::fclose(result);
    top->final();
    delete top;
    return 0;
}
