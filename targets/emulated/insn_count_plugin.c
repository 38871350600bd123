// QEMU TCG plugin: exact guest-instruction counts for the firmware.
//
//   qemu-system-arm ... -plugin insn_count.so,out=FILE,mark=ADDR[,profile=FILE2,base=A,size=N]
//
// Counts every executed guest instruction and, each time the guest executes the
// instruction at ADDR (the firmware's kws_count_mark), appends the running count
// to FILE, so the host gets the instructions between two marks (one hop) exactly.
// With profile=: also counts, per instruction address in [A, A + N), the executions
// between a step's two marks, written as "address count" lines to FILE2 at exit (the
// host maps them to functions with the ELF's symbols).
// Debian's QEMU loads plugins but ships no qemu-plugin.h, so the few API
// declarations used are written out here (QEMU plugin API version 1, QEMU 7.x).
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
struct qemu_plugin_tb;
struct qemu_plugin_insn;
typedef struct qemu_info_t qemu_info_t;
enum qemu_plugin_cb_flags { QEMU_PLUGIN_CB_NO_REGS, QEMU_PLUGIN_CB_R_REGS, QEMU_PLUGIN_CB_RW_REGS };
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb* tb);
typedef void (*qemu_plugin_vcpu_udata_cb_t)(unsigned int vcpu_index, void* userdata);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void* userdata);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb* tb);
struct qemu_plugin_insn* qemu_plugin_tb_get_insn(const struct qemu_plugin_tb* tb, size_t idx);
uint64_t qemu_plugin_insn_vaddr(const struct qemu_plugin_insn* insn);
void qemu_plugin_register_vcpu_insn_exec_inline(struct qemu_plugin_insn* insn, enum qemu_plugin_op op,
                                                void* ptr, uint64_t imm);
void qemu_plugin_register_vcpu_insn_exec_cb(struct qemu_plugin_insn* insn,
                                            qemu_plugin_vcpu_udata_cb_t cb,
                                            enum qemu_plugin_cb_flags flags, void* userdata);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void* userdata);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t count;  // one vCPU: no atomics needed
static uint64_t mark = UINT64_MAX;
static FILE* out;
static const char* profile_path;
static uint64_t profile_base, profile_size;
static uint64_t* profile;  // executions per 2-byte slot (Thumb and RVC instructions)
static int in_step;        // between a step's two marks

static void on_mark(unsigned int vcpu_index, void* userdata) {
  (void)vcpu_index;
  (void)userdata;
  fprintf(out, "%" PRIu64 "\n", count);
  fflush(out);
  in_step = !in_step;
}

static void on_profiled(unsigned int vcpu_index, void* userdata) {
  (void)vcpu_index;
  if (in_step) ++profile[(uintptr_t)userdata];
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb* tb) {
  (void)id;
  size_t n = qemu_plugin_tb_n_insns(tb);
  for (size_t i = 0; i < n; ++i) {
    struct qemu_plugin_insn* insn = qemu_plugin_tb_get_insn(tb, i);
    // Per instruction, not per block: a block left early (exception,
    // semihosting call) still counts only what ran.
    qemu_plugin_register_vcpu_insn_exec_inline(insn, QEMU_PLUGIN_INLINE_ADD_U64, &count, 1);
    uint64_t vaddr = qemu_plugin_insn_vaddr(insn) & ~(uint64_t)1;
    if (vaddr == mark) {
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_mark, QEMU_PLUGIN_CB_NO_REGS, NULL);
    }
    if (profile && vaddr >= profile_base && vaddr - profile_base < profile_size) {
      qemu_plugin_register_vcpu_insn_exec_cb(insn, on_profiled, QEMU_PLUGIN_CB_NO_REGS,
                                             (void*)(uintptr_t)((vaddr - profile_base) / 2));
    }
  }
}

static void on_plugin_exit(qemu_plugin_id_t id, void* userdata) {
  (void)id;
  (void)userdata;
  fprintf(out, "total %" PRIu64 "\n", count);
  fclose(out);
  FILE* p = profile ? fopen(profile_path, "w") : NULL;
  if (p) {
    for (uint64_t i = 0; i < profile_size / 2; ++i) {
      if (profile[i]) fprintf(p, "%" PRIu64 " %" PRIu64 "\n", profile_base + 2 * i, profile[i]);
    }
    fclose(p);
  }
}

__attribute__((visibility("default"))) int qemu_plugin_install(qemu_plugin_id_t id,
                                                               const qemu_info_t* info, int argc,
                                                               char** argv) {
  (void)info;
  const char* path = NULL;
  for (int i = 0; i < argc; ++i) {
    if (strncmp(argv[i], "out=", 4) == 0) path = argv[i] + 4;
    if (strncmp(argv[i], "mark=", 5) == 0) mark = strtoull(argv[i] + 5, NULL, 0) & ~(uint64_t)1;
    if (strncmp(argv[i], "profile=", 8) == 0) profile_path = argv[i] + 8;
    if (strncmp(argv[i], "base=", 5) == 0) profile_base = strtoull(argv[i] + 5, NULL, 0);
    if (strncmp(argv[i], "size=", 5) == 0) profile_size = strtoull(argv[i] + 5, NULL, 0);
  }
  if (profile_path && profile_size) {
    profile = calloc(profile_size / 2 + 1, sizeof(uint64_t));
    if (!profile) return -1;
  }
  out = path ? fopen(path, "w") : stderr;
  if (!out) return -1;
  qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
  qemu_plugin_register_atexit_cb(id, on_plugin_exit, NULL);
  return 0;
}
