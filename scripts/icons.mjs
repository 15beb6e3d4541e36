#!/usr/bin/env node
// Renders assets/icons/icon.svg to the PNG sizes electron-builder and the desktop want
// (NxN.png for Linux, icon.png 1024 for macOS/Windows, which electron-builder converts),
// with Debian's Chromium. Run after editing the SVG: npm run build:icons
import { chromium } from 'playwright-core';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const dir = path.resolve('assets/icons');
const svg = readFileSync(path.join(dir, 'icon.svg'), 'utf8');
const browser = await chromium.launch({ executablePath: process.env.FERRY_CHROMIUM ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
try {
  const page = await browser.newPage();
  for (const size of [16, 24, 32, 48, 64, 128, 256, 512, 1024]) {
    await page.setViewportSize({ width: size, height: size });
    await page.setContent(`<html><body style="margin:0;background:transparent">${svg.replace('width="512" height="512"', `width="${size}" height="${size}"`)}</body></html>`);
    const png = await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } });
    writeFileSync(path.join(dir, size === 1024 ? 'icon.png' : `${size}x${size}.png`), png);
  }
} finally {
  await browser.close();
}
console.log(`icons written to ${dir}`);
