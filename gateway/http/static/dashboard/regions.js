// Region names (GB/T 2260, the gateway's data/regions.json) and the drill-down path:
// province (2 digits) → city (4) → county (6).

let index = new Map(); // code → {code, name, parent, children: [codes]}

export async function loadRegions() {
  const response = await fetch("/dashboard/regions.json", { credentials: "omit" });
  const data = await response.json();
  index = new Map();
  for (const province of data.provinces || []) {
    index.set(province.code, {
      code: province.code,
      name: province.name,
      parent: null,
      children: (province.cities || []).map((c) => c.code),
    });
    for (const city of province.cities || []) {
      index.set(city.code, {
        code: city.code,
        name: city.name,
        parent: province.code,
        children: (city.counties || []).map((c) => c.code),
      });
      for (const county of city.counties || []) {
        index.set(county.code, { code: county.code, name: county.name, parent: city.code, children: [] });
      }
    }
  }
}

export function regionName(code) {
  return index.get(code)?.name || code;
}

export function children(code) {
  return index.get(code)?.children || [];
}

/** "PROVINCE" | "CITY" | "COUNTY" from the length of a code. */
export function levelOf(code) {
  return { 2: "PROVINCE", 4: "CITY", 6: "COUNTY" }[code.length] || "COUNTY";
}

/** The level one below (a county stays a county: the statistics go no finer). */
export function childLevel(code) {
  return { 2: "CITY", 4: "COUNTY", 6: "COUNTY" }[code.length] || "COUNTY";
}

/** Codes from the top of `code`'s province down to `code`. */
export function path(code) {
  const out = [];
  for (const length of [2, 4, 6]) if (code.length >= length) out.push(code.slice(0, length));
  return out;
}
