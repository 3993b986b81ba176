// Which Debian mirror and suite the machine's apt uses: the Debian image builder (image/debian.ts)
// runs debootstrap from the same mirror, never from a hard-coded one.
//
// Pure: the caller reads /etc/apt/sources.list and /etc/apt/sources.list.d/* and passes their text.
// Both formats are read:
//   one-line  `deb [options] URI SUITE COMPONENT...`            (sources.list, *.list)
//   deb822    stanzas with `Types:`, `URIs:`, `Suites:`, `Components:` (*.sources), blank-line separated
// A source qualifies when it is a binary (`deb`) source, its suite is the wanted one exactly (not
// `bookworm-updates` or `bookworm-security`), its components include `main`, and `Enabled:` is not `no`.
// The first qualifying source in file order wins (apt's own order); URIs keep their scheme and path.

export interface AptSource { uri: string; suite: string; components: string[]; file: string }

export interface AptFile { file: string; text: string }

/** Every binary source of one file (one-line or deb822, chosen by the file name: *.sources is deb822). */
export function parseAptFile(f: AptFile): AptSource[] {
  return f.file.endsWith('.sources') ? parseDeb822(f) : parseOneLine(f);
}

function parseOneLine(f: AptFile): AptSource[] {
  const out: AptSource[] = [];
  for (const raw of f.text.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line.startsWith('deb ') && !line.startsWith('deb\t')) continue;
    // options in brackets: `deb [arch=amd64 signed-by=...] URI ...`
    const rest = line.slice(3).trim().replace(/^\[[^\]]*\]\s*/, '');
    const [uri, suite, ...components] = rest.split(/\s+/);
    if (uri && suite) out.push({ uri, suite, components, file: f.file });
  }
  return out;
}

function parseDeb822(f: AptFile): AptSource[] {
  const out: AptSource[] = [];
  const stanzas = f.text.split(/\n\s*\n/);
  for (const st of stanzas) {
    const fields = new Map<string, string>();
    let last = '';
    for (const raw of st.split('\n')) {
      if (raw.startsWith('#')) continue;
      if (/^\s/.test(raw) && last) { fields.set(last, `${fields.get(last)} ${raw.trim()}`); continue; }
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (!m) continue;
      last = m[1]!.toLowerCase();
      fields.set(last, m[2]!.trim());
    }
    if ((fields.get('enabled') ?? 'yes').toLowerCase() === 'no') continue;
    const types = (fields.get('types') ?? '').split(/\s+/);
    if (!types.includes('deb')) continue;
    const components = (fields.get('components') ?? '').split(/\s+/).filter(Boolean);
    for (const uri of (fields.get('uris') ?? '').split(/\s+/).filter(Boolean)) {
      for (const suite of (fields.get('suites') ?? '').split(/\s+/).filter(Boolean)) out.push({ uri, suite, components, file: f.file });
    }
  }
  return out;
}

/** The first source of `suite` with the main component, or undefined. */
export function debianMirror(files: readonly AptFile[], suite: string): AptSource | undefined {
  for (const f of files) {
    for (const s of parseAptFile(f)) if (s.suite === suite && s.components.includes('main')) return s;
  }
  return undefined;
}

/** VERSION_CODENAME from /etc/os-release text (e.g. "bookworm"), or undefined. */
export function osCodename(osRelease: string): string | undefined {
  const m = /^VERSION_CODENAME=["']?([A-Za-z0-9.-]+)["']?\s*$/m.exec(osRelease);
  return m?.[1];
}
