/**
 * The dashboard's files by URL path: every page, script and style sheet in `web/` beside this
 * module (`src/web/` under tsx, `dist/web/` once built), and uPlot's browser build read from
 * its npm package under `/vendor/`. The page loads nothing from another origin, so it works
 * offline and under a strict content security policy.
 */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface WebAsset {
  file: string;
  type: string;
}

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
};

/** uPlot's minified script (it defines the global `uPlot`) and its style sheet. */
const UPLOT_FILES = ['uPlot.iife.min.js', 'uPlot.min.css'];

/** Every file served, by path: `index.html` at `/`, the rest under their own names. */
export function webAssets(): Map<string, WebAsset> {
  const assets = new Map<string, WebAsset>();
  const webDir = fileURLToPath(new URL('./web/', import.meta.url));
  for (const name of readdirSync(webDir)) {
    const type = TYPES[extname(name)];
    if (type) assets.set(name === 'index.html' ? '/' : `/${name}`, { file: join(webDir, name), type });
  }
  const uplotDir = dirname(createRequire(import.meta.url).resolve(`uplot/dist/${UPLOT_FILES[0]}`));
  for (const name of UPLOT_FILES) assets.set(`/vendor/${name}`, { file: join(uplotDir, name), type: TYPES[extname(name)]! });
  return assets;
}
