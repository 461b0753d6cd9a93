// The package ships plain CommonJS without types; this is the one function it exports.
declare module 'unix-crypt-td-js' {
  /** Traditional DES crypt(3): at most 8 password bytes (low 7 bits each), 2-character salt. */
  function unixCryptTD(password: string | number[], salt: string | number[], returnBytes?: false): string;
  export = unixCryptTD;
}
