// `npm run tauri <command>` from ui/: the Tauri CLI for the app in
// ../src-tauri. Why a script: npm runs scripts in ui/, and the CLI only
// looks for tauri.conf.json below the folder it starts in; these two
// variables point it at the app and at this front end on every OS (an
// inline `VAR=value tauri` would not work in Windows' cmd).
import { fileURLToPath } from 'node:url';
import cli from '@tauri-apps/cli';

process.env.TAURI_APP_PATH = fileURLToPath(new URL('../../src-tauri', import.meta.url));
process.env.TAURI_FRONTEND_PATH = fileURLToPath(new URL('..', import.meta.url));

cli.run(process.argv.slice(2), 'npm run tauri').catch((error) => {
  cli.logError(error.message);
  process.exit(1);
});
