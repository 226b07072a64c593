/**
 * QEMU's trace log ("log" backend, `-trace enable=...` or `-d trace:...`), read by the events' own format strings.
 *
 * Each event below is the trace-events line as QEMU's tree has it, copied verbatim with the file and commit it
 * was read at (qemu/qemu; the files were read one by one, each at its stored commit). The format string is
 * compiled into a pattern the way printf would print it, so a line is read by exactly the fields QEMU wrote.
 * The log backend prints `name ` + format + newline (scripts/tracetool/backend/log.py at 1abdde1ad42d, generate_h);
 * QEMU versions before the simple `qemu_log` form printed `pid@seconds.micros:` first, which is also accepted.
 */
import { expectFromLog, hex, type Mapping, type Translator } from './translate.js';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, KVM_MEMORY_EXIT_FLAG_PRIVATE } from '@gmemlab/core';

/**
 * The expectation an iommufd event's `(%d)` gives: QEMU traces the ioctl's own return (backends/iommufd.c
 * iommufd_backend_map_dma and its siblings call the trace before `ret = -errno`), so a failure prints -1 and not
 * which errno: 0 is 'ok', a failure carries no expectation (and is said once in the report).
 */
function ioctlExpect(t: Translator, ret: bigint): string | undefined {
  if (ret === 0n) return 'ok';
  t.assumptions.add(
    "an iommufd event that logs a failure prints the ioctl's -1, not its errno: its step carries no expectation",
  );
  return undefined;
}

/** Events that are part of a conversion's notification (between kvm_convert_memory and QEMU's discard of the old side). */
const NOTIFY_EVENTS = new Set([
  'ram_block_attributes_state_change',
  'iommufd_backend_map_dma',
  'iommufd_backend_map_file_dma',
  'iommufd_backend_unmap_dma',
  'iommufd_backend_unmap_dma_non_exist',
  'vfio_listener_region_add_ram',
  'vfio_listener_region_del',
]);

/** The trace-events files read, with the commit each was read at. */
export const QEMU_SOURCES = {
  'accel/kvm/trace-events': '08c328682231b64878fc052a11091bea39577a6f',
  'system/trace-events': '1f3241bcaeee0df47f72edf6abad71fe36f3b0e7',
  'backends/trace-events': '0885cd5504dfdbd531a1fc0e3e421d3c9934b03a',
  'hw/vfio/trace-events': '0107e9f0cc70ee20c5f676e041d5a262ee5622be',
  'scripts/tracetool/backend/log.py': '1abdde1ad42d0ebccc5e8bc574ebe805cd650102',
} as const;

/** The events read, as their trace-events lines (verbatim). */
export const QEMU_EVENTS: ReadonlyArray<{ file: keyof typeof QEMU_SOURCES; line: string }> = [
  {
    file: 'accel/kvm/trace-events',
    line: String.raw`kvm_set_user_memory(uint16_t as, uint16_t slot, uint32_t flags, uint64_t guest_phys_addr, uint64_t memory_size, uint64_t userspace_addr, uint32_t fd, uint64_t fd_offset, int ret) "AddrSpace#%d Slot#%d flags=0x%x gpa=0x%"PRIx64 " size=0x%"PRIx64 " ua=0x%"PRIx64 " guest_memfd=%d" " guest_memfd_offset=0x%" PRIx64 " ret=%d"`,
  },
  {
    file: 'accel/kvm/trace-events',
    line: String.raw`kvm_convert_memory(uint64_t start, uint64_t size, const char *msg) "start 0x%" PRIx64 " size 0x%" PRIx64 " %s"`,
  },
  {
    file: 'accel/kvm/trace-events',
    line: String.raw`kvm_memory_fault(uint64_t start, uint64_t size, uint64_t flags) "start 0x%" PRIx64 " size 0x%" PRIx64 " flags 0x%" PRIx64`,
  },
  {
    file: 'system/trace-events',
    line: String.raw`ram_block_discard_shared_range(const char *rbname, void *hva, size_t length, bool need_madvise, bool need_fallocate, int ret) "%s@%p + 0x%zx: madvise: %d fallocate: %d ret: %d"`,
  },
  {
    file: 'system/trace-events',
    line: String.raw`qemu_ram_alloc_shared(const char *name, size_t size, size_t max_size, int fd, void *host) "%s size %zu max_size %zu fd %d host %p"`,
  },
  {
    file: 'system/trace-events',
    line: String.raw`ram_block_attributes_state_change(uint64_t offset, uint64_t size, const char *from, const char *to) "offset 0x%"PRIx64" size 0x%"PRIx64" from '%s' to '%s'"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_connect(int fd, bool owned, uint32_t users) "fd=%d owned=%d users=%d"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_disconnect(int fd, uint32_t users) "fd=%d users=%d"`,
  },
  { file: 'backends/trace-events', line: String.raw`iommu_backend_set_fd(int fd) "pre-opened /dev/iommu fd=%d"` },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_map_dma(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size, void *vaddr, bool readonly, int ret) " iommufd=%d ioas=%d iova=0x%"PRIx64" size=0x%"PRIx64" addr=%p readonly=%d (%d)"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_map_file_dma(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size, int fd, unsigned long start, bool readonly, int ret) " iommufd=%d ioas=%d iova=0x%"PRIx64" size=0x%"PRIx64" fd=%d start=%ld readonly=%d (%d)"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_unmap_dma_non_exist(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size, int ret) " Unmap nonexistent mapping: iommufd=%d ioas=%d iova=0x%"PRIx64" size=0x%"PRIx64" (%d)"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_unmap_dma(int iommufd, uint32_t ioas, uint64_t iova, uint64_t size, int ret) " iommufd=%d ioas=%d iova=0x%"PRIx64" size=0x%"PRIx64" (%d)"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_alloc_ioas(int iommufd, uint32_t ioas) " iommufd=%d ioas=%d"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_alloc_hwpt(int iommufd, uint32_t dev_id, uint32_t pt_id, uint32_t flags, uint32_t hwpt_type, uint32_t len, uint64_t data_ptr, uint32_t out_hwpt_id, int ret) " iommufd=%d dev_id=%u pt_id=%u flags=0x%x hwpt_type=%u len=%u data_ptr=0x%"PRIx64" out_hwpt=%u (%d)"`,
  },
  {
    file: 'backends/trace-events',
    line: String.raw`iommufd_backend_free_id(int iommufd, uint32_t id, int ret) " iommufd=%d id=%d (%d)"`,
  },
  {
    file: 'hw/vfio/trace-events',
    line: String.raw`iommufd_cdev_attach_ioas_hwpt(int iommufd, const char *name, int devfd, int id) " [iommufd=%d] Successfully attached device %s (%d) to id=%d"`,
  },
  {
    file: 'hw/vfio/trace-events',
    line: String.raw`iommufd_cdev_detach_ioas_hwpt(int iommufd, const char *name) " [iommufd=%d] Successfully detached %s"`,
  },
  {
    file: 'hw/vfio/trace-events',
    line: String.raw`vfio_listener_region_add_ram(uint64_t iova_start, uint64_t iova_end, void *vaddr) "region_add [ram] 0x%"PRIx64" - 0x%"PRIx64" [%p]"`,
  },
  {
    file: 'hw/vfio/trace-events',
    line: String.raw`vfio_listener_region_del(uint64_t start, uint64_t end) "region_del 0x%"PRIx64" - 0x%"PRIx64`,
  },
];

type Value = bigint | string;
interface CompiledEvent {
  name: string;
  file: string;
  args: string[];
  pattern: RegExp;
  kinds: string[];
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `name(args) "fmt" PRIx64 "..."` into the event's name, argument names and a pattern of its printed form. */
export function compileEvent(line: string, file: string): CompiledEvent {
  const head = /^([a-z_][a-z0-9_]*)\(([^)]*)\)\s*(.*)$/.exec(line);
  if (!head) throw new Error(`not a trace-events line: ${line}`);
  const [, name, argList, rest] = head as unknown as [string, string, string, string];
  const args =
    argList.trim() === 'void' ? [] : argList.split(',').map((a) => /([A-Za-z_][A-Za-z0-9_]*)\s*$/.exec(a.trim())![1]!);
  // The format: C string literals and PRI* macros, concatenated (a PRI macro adds its length and conversion).
  let format = '';
  for (const m of rest.matchAll(/"((?:[^"\\]|\\.)*)"|(PRI[diouxX](?:8|16|32|64|PTR))/g)) {
    if (m[1] !== undefined) format += m[1].replace(/\\(["\\t])/g, (_, c: string) => (c === 't' ? '\t' : c));
    else format += m[2]!.slice(3, 4);
  }
  let pattern = `^${escape(name)} +`;
  const kinds: string[] = [];
  const conversion = /%([-0 #+]*\d*(?:\.\d+)?)(hh|h|ll|l|z|j|t)?([diouxXpsc%])/y;
  let literal = '';
  const flush = () => {
    pattern += escape(literal).replace(/ +/g, ' +');
    literal = '';
  };
  let at = 0;
  const body = format.replace(/^ +/, '');
  while (at < body.length) {
    conversion.lastIndex = at;
    const m = body[at] === '%' ? conversion.exec(body) : null;
    if (!m) {
      literal += body[at++];
      continue;
    }
    at = conversion.lastIndex;
    if (m[3] === '%') {
      literal += '%';
      continue;
    }
    flush();
    const c = m[3]!;
    kinds.push(c);
    pattern +=
      c === 'd' || c === 'i'
        ? '(-?\\d+)'
        : c === 'u'
          ? '(\\d+)'
          : c === 'x' || c === 'X'
            ? '([0-9a-fA-F]+)'
            : c === 'p'
              ? '(0x[0-9a-fA-F]+|\\(nil\\))'
              : c === 'c'
                ? '(.)'
                : '(.*?)';
  }
  flush();
  return { name, file, args, pattern: new RegExp(`${pattern} *$`), kinds };
}

function values(event: CompiledEvent, m: RegExpExecArray): Record<string, Value> {
  const out: Record<string, Value> = {};
  event.kinds.forEach((c, i) => {
    const text = m[i + 1]!;
    out[event.args[i]!] =
      c === 's' || c === 'c'
        ? text
        : c === 'p'
          ? text === '(nil)'
            ? 0n
            : BigInt(text)
          : c === 'x' || c === 'X'
            ? BigInt(`0x${text}`)
            : BigInt(text);
  });
  return out;
}

const COMPILED = new Map(QEMU_EVENTS.map((e) => [compileEvent(e.line, e.file).name, compileEvent(e.line, e.file)]));

/** `pid@seconds.micros:name rest` or `name rest`. */
const LINE = /^(?:\d+@\d+\.\d+:)?([a-z_][a-z0-9_]*) /;

/** Whether a line looks like one of the events read (for telling the format). */
export function isQemuLine(text: string): boolean {
  const m = LINE.exec(text);
  return m !== null && COMPILED.has(m[1]!);
}

export class QemuReader {
  private gmemByFd = new Map<bigint, string>();
  private memfdByFd = new Map<bigint, string>();
  private iommufds = new Map<bigint, string>();
  private ioases = new Map<string, string>();
  private hwpts = new Map<string, string>();
  private devices = new Map<string, string>();

  /**
   * The guest_memfd punch QEMU makes, untraced, after a conversion to shared (accel/kvm/kvm-all.c
   * kvm_convert_memory: ram_block_discard_guest_memfd_range, fallocate(PUNCH_HOLE | KEEP_SIZE) on the guest_memfd),
   * written once the conversion's notification lines (the RamDiscardManager's, VFIO's maps) are past, QEMU's order.
   */
  private pendingPunch: { line: number; gpa: bigint; size: bigint; note: string } | undefined;

  constructor(private readonly t: Translator) {}

  /** The end of the log: a punch still pending is written. */
  finish(): void {
    this.flushPunch();
  }

  private flushPunch(): void {
    const p = this.pendingPunch;
    if (!p) return;
    this.pendingPunch = undefined;
    const t = this.t;
    const line = t.line;
    t.line = p.line;
    for (const piece of t.gmemPieces(p.gpa, p.size)) {
      t.fallocate(
        { handle: piece.gmem, kind: 'gmem' },
        BigInt(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE),
        piece.offset,
        piece.size,
        `${p.note}: untraced ram_block_discard_guest_memfd_range punches GPA ${hex(piece.gpa)} (+${hex(piece.size)}) out of ${piece.gmem}`,
      );
    }
    t.line = line;
    t.assumptions.add(
      'untraced: after a conversion to shared, kvm_convert_memory punches the range out of the guest_memfd (ram_block_discard_guest_memfd_range), after the RamDiscardManager notified VFIO',
    );
  }

  static sources(): string[] {
    return Object.entries(QEMU_SOURCES).map(([file, commit]) => `qemu/qemu ${file} @ ${commit.slice(0, 12)}`);
  }

  line(text: string): void {
    const t = this.t;
    const head = LINE.exec(text);
    if (!head) return t.unknown(text.trim() === '' ? 'empty line' : 'not a QEMU trace line');
    const event = COMPILED.get(head[1]!);
    if (!event) return t.unknown(`QEMU event ${head[1]} (not one the replay reads)`);
    const m = event.pattern.exec(text.slice(text.indexOf(head[1]!)));
    if (!m)
      return t.fail(
        `${event.name}: the line does not match its format string (${event.file} @ ${QEMU_SOURCES[event.file as keyof typeof QEMU_SOURCES].slice(0, 12)}): ${text.slice(0, 200)}`,
      );
    if (!NOTIFY_EVENTS.has(event.name)) this.flushPunch();
    this.event(event.name, values(event, m));
  }

  private ioas(iommufd: Value, id: Value): string | undefined {
    const key = `${iommufd}/${id}`;
    return this.ioases.get(key) ?? this.hwpts.get(key);
  }

  private mapping(address: bigint, length: bigint, what: string): Mapping {
    return (
      this.t.mappingAt(address, length) ??
      this.t.fail(
        `${what}: address ${hex(address)} (+${hex(length)}) is in no memory this log has shown (no memslot, no qemu_ram_alloc_shared maps it)`,
      )
    );
  }

  private event(name: string, v: Record<string, Value>): void {
    const t = this.t;
    const n = (k: string) => v[k] as bigint;
    const note = `${name}`;
    switch (name) {
      case 'kvm_set_user_memory': {
        const vm = t.implicitVm();
        const fd = n('fd');
        let gmem: string | undefined;
        if (fd >= 0n) {
          gmem = this.gmemByFd.get(fd);
          if (gmem === undefined) {
            gmem = t.createGuestMemfd(vm, `guest_memfd fd ${fd} (implied: QEMU traces no KVM_CREATE_GUEST_MEMFD)`);
            this.gmemByFd.set(fd, gmem);
            t.assumptions.add(
              "QEMU's trace has no event for KVM_CREATE_GUEST_MEMFD: a guest_memfd is created at the first memslot naming its fd",
            );
          }
        }
        let ua: string | undefined;
        const size = n('memory_size');
        if (size > 0n && n('userspace_addr') !== 0n) {
          let m = t.mappingAt(n('userspace_addr'), size);
          if (!m) {
            // QEMU traces no RAMBlock allocation (but qemu_ram_alloc_shared): the memory at ua is as big as the slot.
            m = { start: n('userspace_addr'), length: size, anonymous: true, shared: false };
            t.addMapping(m);
            t.assumptions.add(
              "QEMU traces no RAM allocation (but qemu_ram_alloc_shared): a memslot's userspace memory not seen before is the slot's size",
            );
          }
          ua = t.addressOf(m, n('userspace_addr'));
        }
        const expect = expectFromLog(n('ret'));
        t.setMemslot(
          vm,
          (n('as') << 16n) | n('slot'),
          n('flags'),
          n('guest_phys_addr'),
          size,
          ua,
          gmem,
          n('fd_offset'),
          `${note} (ret=${n('ret')})`,
          expect,
          n('userspace_addr'),
        );
        // accel/kvm/kvm-all.c kvm_set_phys_mem: a memslot added for RAM with a guest_memfd is made private
        // (kvm_set_memory_attributes_private over the slot), untraced; QEMU aborts when the memslot failed.
        if (gmem !== undefined && size > 0n && n('ret') === 0n) {
          t.setVmMemoryAttributes(
            vm,
            n('guest_phys_addr'),
            size,
            true,
            `${note}: untraced kvm_set_memory_attributes_private over the slot (kvm_set_phys_mem)`,
          );
          t.assumptions.add(
            'untraced: kvm_set_phys_mem sets guest_memfd RAM private (kvm_set_memory_attributes_private over each guest_memfd memslot it adds)',
          );
        }
        return t.replayed();
      }
      case 'kvm_convert_memory': {
        const msg = v.msg as string;
        if (msg !== 'shared_to_private' && msg !== 'private_to_shared')
          return t.unknown(`kvm_convert_memory with '${msg}' (neither shared_to_private nor private_to_shared)`);
        const vm = t.implicitVm();
        if (!t.setVmMemoryAttributes(vm, n('start'), n('size'), msg === 'shared_to_private', `${note} ${msg}`))
          return t.skip('kvm_convert_memory of a GPA range in no guest_memfd memslot (QEMU ignores those too)');
        // To private, QEMU's discard of the shared side is traced (ram_block_discard_shared_range) and replayed from
        // its line; to shared, the guest_memfd punch is not: it is written after the notification lines.
        if (msg === 'private_to_shared')
          this.pendingPunch = { line: t.line, gpa: n('start'), size: n('size'), note: `${note} ${msg}` };
        return t.replayed();
      }
      case 'kvm_memory_fault': {
        const vm = t.implicitVm();
        const intent = (n('flags') & BigInt(KVM_MEMORY_EXIT_FLAG_PRIVATE)) !== 0n ? 'private' : 'shared';
        t.step(
          { call: 'vm.guestRead', on: vm, gpa: hex(n('start')), length: hex(n('size')), intent },
          `${note}: the guest's ${intent} access that exited (KVM_EXIT_MEMORY_FAULT)`,
        );
        return t.replayed();
      }
      case 'ram_block_discard_shared_range': {
        const m = this.mapping(n('hva'), n('length'), name);
        t.discard(
          m,
          n('hva'),
          n('length'),
          n('need_fallocate') !== 0n,
          n('need_madvise') !== 0n,
          `${note} ${v.rbname as string} (ret=${n('ret')})`,
          n('ret'),
        );
        return t.replayed();
      }
      case 'qemu_ram_alloc_shared': {
        const size = n('max_size');
        const memfd = t.createMemfd(`${note} ${v.name as string} fd ${n('fd')}`, size);
        const handle = t.name('m');
        t.step(
          { call: 'memfd.mmap', on: memfd, as: handle, length: hex(size), shared: true },
          `${note}: mapped at ${hex(n('host'))}`,
        );
        t.addMapping({
          start: n('host'),
          length: size,
          handle,
          file: { handle: memfd, kind: 'memfd', offset: 0n },
          anonymous: false,
          shared: true,
        });
        this.memfdByFd.set(n('fd'), memfd);
        return t.replayed();
      }
      case 'ram_block_attributes_state_change':
        return t.skip(
          "ram_block_attributes_state_change (the RamDiscardManager's notice; the DMA unmap or map it leads to is traced by iommufd_backend_*)",
        );
      case 'iommufd_backend_connect':
      case 'iommu_backend_set_fd': {
        if (this.iommufds.has(n('fd'))) return t.skip(`${name} of an iommufd already open (another user)`);
        const handle = t.name('iommufd');
        t.step({ call: 'host.openIommufd', as: handle }, `${note} fd=${n('fd')}`);
        this.iommufds.set(n('fd'), handle);
        return t.replayed();
      }
      case 'iommufd_backend_disconnect': {
        const handle = this.iommufds.get(n('fd'));
        if (handle === undefined)
          return t.fail(`iommufd_backend_disconnect: iommufd ${n('fd')} was never connected in this log`);
        if (n('users') !== 0n) return t.skip('iommufd_backend_disconnect with users left (the fd stays open)');
        t.step({ call: 'iommufd.close', on: handle }, note);
        this.iommufds.delete(n('fd'));
        return t.replayed();
      }
      case 'iommufd_backend_alloc_ioas': {
        const fd =
          this.iommufds.get(n('iommufd')) ??
          t.fail(
            `iommufd_backend_alloc_ioas: iommufd ${n('iommufd')} was never connected in this log (no iommufd_backend_connect)`,
          );
        const handle = t.name('ioas');
        t.step({ call: 'iommufd.createIoas', on: fd, as: handle }, `${note} ioas=${n('ioas')}`);
        this.ioases.set(`${n('iommufd')}/${n('ioas')}`, handle);
        return t.replayed();
      }
      case 'iommufd_backend_alloc_hwpt': {
        const ioas = this.ioas(n('iommufd'), n('pt_id'));
        if (ioas !== undefined && n('ret') === 0n) this.hwpts.set(`${n('iommufd')}/${n('out_hwpt_id')}`, ioas);
        return t.skip('iommufd_backend_alloc_hwpt (the domain: the model makes it when a device attaches)');
      }
      case 'iommufd_cdev_attach_ioas_hwpt': {
        const ioas =
          this.ioas(n('iommufd'), n('id')) ??
          t.fail(
            `iommufd_cdev_attach_ioas_hwpt: id ${n('id')} is no IOAS or hwpt this log allocated on iommufd ${n('iommufd')}`,
          );
        const handle = t.name('device');
        t.step({ call: 'ioas.attachDevice', on: ioas, as: handle, name: v.name as string }, note);
        this.devices.set(v.name as string, handle);
        return t.replayed();
      }
      case 'iommufd_cdev_detach_ioas_hwpt': {
        const device =
          this.devices.get(v.name as string) ??
          t.fail(`iommufd_cdev_detach_ioas_hwpt: device ${v.name as string} was never attached in this log`);
        t.step({ call: 'device.detach', on: device }, note);
        this.devices.delete(v.name as string);
        return t.replayed();
      }
      case 'iommufd_backend_map_dma': {
        const ioas =
          this.ioas(n('iommufd'), n('ioas')) ??
          t.fail(
            `iommufd_backend_map_dma: ioas ${n('ioas')} was never allocated in this log on iommufd ${n('iommufd')}`,
          );
        const m = this.mapping(n('vaddr'), n('size'), name);
        const mapping = t.materialize(m);
        t.step(
          {
            call: 'ioas.map',
            on: ioas,
            mapping,
            offset: hex(n('vaddr') - m.start),
            length: hex(n('size')),
            iova: hex(n('iova')),
            flags: t.mapFlags(n('readonly') !== 0n, true),
          },
          `${note} (${n('ret')})`,
          ioctlExpect(t, n('ret')),
        );
        return t.replayed();
      }
      case 'iommufd_backend_map_file_dma': {
        const ioas =
          this.ioas(n('iommufd'), n('ioas')) ??
          t.fail(
            `iommufd_backend_map_file_dma: ioas ${n('ioas')} was never allocated in this log on iommufd ${n('iommufd')}`,
          );
        let file = this.gmemByFd.get(n('fd')) ?? this.memfdByFd.get(n('fd'));
        let start = n('start');
        let how = '';
        if (file === undefined) {
          // An fd QEMU never traced opening: memory-backend-memfd RAM, whose fd VFIO maps by MAP_FILE (hw/vfio/
          // container.c vfio_container_dma_map: dma_map_file when the RAM block has an fd). VFIO maps guest RAM at
          // IOVA = GPA, so the fd is the file behind the memslot's memory at that GPA, when one holds the range.
          const shared = t.sharedFileAt(n('iova'), n('size'));
          if (!shared)
            return t.fail(
              `iommufd_backend_map_file_dma: fd ${n('fd')} was never seen in this log (no memslot or qemu_ram_alloc_shared names it), and no memslot's memory holds GPA ${hex(n('iova'))} (+${hex(n('size'))})`,
            );
          file = shared.handle;
          this.memfdByFd.set(n('fd'), file);
          how = ` (fd ${n('fd')} taken as ${file}, the memory of the memslot at GPA ${hex(n('iova'))}${shared.offset !== start ? `, at its offset ${hex(shared.offset)}, not the logged start=${start}` : ''})`;
          start = shared.offset;
          t.assumptions.add(
            "an iommufd MAP_FILE of an fd QEMU never traced opening (memory-backend-memfd RAM) maps the file behind the memslot's memory at IOVA = GPA (VFIO maps guest RAM 1:1)",
          );
        }
        t.use(file, start, n('size'));
        t.step(
          {
            call: 'ioas.mapFile',
            on: ioas,
            fd: file,
            start: hex(start),
            length: hex(n('size')),
            iova: hex(n('iova')),
            flags: t.mapFlags(n('readonly') !== 0n, true),
          },
          `${note} (${n('ret')})${how}`,
          ioctlExpect(t, n('ret')),
        );
        return t.replayed();
      }
      case 'iommufd_backend_unmap_dma':
      case 'iommufd_backend_unmap_dma_non_exist': {
        const ioas =
          this.ioas(n('iommufd'), n('ioas')) ??
          t.fail(`${name}: ioas ${n('ioas')} was never allocated in this log on iommufd ${n('iommufd')}`);
        // backends/iommufd.c iommufd_backend_unmap_dma: the _non_exist event is the ioctl failing with ENOENT (QEMU
        // then returns 0); the other prints the ioctl's own return.
        t.step(
          { call: 'ioas.unmap', on: ioas, iova: hex(n('iova')), length: hex(n('size')) },
          `${note} (${n('ret')})`,
          name === 'iommufd_backend_unmap_dma_non_exist' ? 'ENOENT' : ioctlExpect(t, n('ret')),
        );
        return t.replayed();
      }
      case 'iommufd_backend_free_id': {
        const key = `${n('iommufd')}/${n('id')}`;
        const ioas = this.ioases.get(key);
        if (ioas === undefined)
          return t.skip(
            'iommufd_backend_free_id of an object that is no IOAS (a hwpt: the model frees it with the device)',
          );
        t.step({ call: 'ioas.destroy', on: ioas }, `${note} (${n('ret')})`, ioctlExpect(t, n('ret')));
        this.ioases.delete(key);
        return t.replayed();
      }
      case 'vfio_listener_region_add_ram':
      case 'vfio_listener_region_del':
        return t.skip(
          `${name} (the listener's view; the DMA map or unmap itself is traced by iommufd_backend_*; a legacy container's VFIO_IOMMU_MAP_DMA has no trace event)`,
        );
    }
  }
}
